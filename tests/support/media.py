"""Test audio made and checked by tools independent of omnivox (the ffmpeg CLI)."""

from __future__ import annotations

import base64
import json
import math
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SAMPLE_RATE = 24_000


def tone_s16le(duration_s: float, pitch_hz: float = 440.0, sample_rate: int = SAMPLE_RATE) -> bytes:
    t = np.arange(int(duration_s * sample_rate)) / sample_rate
    return (0.3 * np.sin(2 * math.pi * pitch_hz * t) * 32767).astype("<i2").tobytes()


def ffmpeg_encode(pcm_s16le: bytes, fmt: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """Encode raw mono PCM into a container with the ffmpeg CLI."""
    muxers = {
        "wav": "wav",
        "mp3": "mp3",
        "flac": "flac",
        "ogg": "ogg",
        "opus": "ogg",
        "webm": "webm",
        "m4a": "ipod",
    }
    codec = {"opus": ["-c:a", "libopus"], "webm": ["-c:a", "libopus"], "ogg": ["-c:a", "libvorbis"]}
    with tempfile.TemporaryDirectory() as tmp:  # some muxers (m4a) need a seekable file
        out = Path(tmp) / f"audio.{fmt}"
        args = ["ffmpeg", "-loglevel", "error", "-f", "s16le", "-ar", str(sample_rate), "-ac", "1"]
        args += ["-i", "-", *codec.get(fmt, []), "-f", muxers[fmt], str(out)]
        subprocess.run(args, input=pcm_s16le, capture_output=True, check=True)
        return out.read_bytes()


def ffmpeg_decode(data: bytes, input_format: str | None = None) -> bytes:
    """Decode any file (or raw pcm16 when ``input_format`` is "pcm16") to 24 kHz mono s16le."""
    pre = ["-f", "s16le", "-ar", "24000", "-ac", "1"] if input_format == "pcm16" else []
    args = [
        "ffmpeg",
        "-loglevel",
        "error",
        *pre,
        "-i",
        "-",
        "-f",
        "s16le",
        "-ar",
        "24000",
        "-ac",
        "1",
        "-",
    ]
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout


def ffprobe_stream(data: bytes) -> dict[str, object]:
    out = subprocess.run(
        ["ffprobe", "-loglevel", "error", "-show_streams", "-show_format", "-of", "json", "-"],
        input=data,
        capture_output=True,
        check=True,
    ).stdout
    info = json.loads(out)
    return {**info["streams"][0], "format_name": info["format"]["format_name"]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def audio_message(data: bytes, fmt: str, text: str | None = None) -> dict[str, object]:
    parts: list[dict[str, object]] = []
    if text:
        parts.append({"type": "text", "text": text})
    parts.append({"type": "input_audio", "input_audio": {"data": b64(data), "format": fmt}})
    return {"role": "user", "content": parts}
