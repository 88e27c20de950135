"""Helpers for driving omnivox with the OpenAI Agents SDK (``openai-agents``, import ``agents``).

``spoken_pcm`` makes the spoken input: espeak-ng's voice, decoded to what the Realtime
API takes (mono PCM16 at 24 kHz), framed by silence so that a server's voice activity
detection sees the speech start and end. ``RealtimeExchange`` follows one
``RealtimeSession`` of the SDK: every raw server event, every error the SDK raised
(its strict parsing of server events ends in one), the tool calls, and each response's
audio and transcript.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from omnivox.audio import OUTPUT_SAMPLE_RATE, decode_audio

ESPEAK_ARGS = ("-v", "en-us", "-s", "140")  # as the engine tests' espeak fixture
FRAME_BYTES = OUTPUT_SAMPLE_RATE // 10 * 2  # 100 ms of PCM16


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(seconds * OUTPUT_SAMPLE_RATE)


def spoken_pcm(text: str, folder: Path, *, lead_s: float = 0.5, trail_s: float = 5.0) -> bytes:
    """``text`` said by espeak-ng as PCM16 at 24 kHz, after ``lead_s`` and before ``trail_s``
    seconds of silence (5 s outlasts semantic VAD's longest wait at "auto" eagerness)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
    subprocess.run(["espeak-ng", *ESPEAK_ARGS, "-w", str(wav), text], check=True)
    samples = decode_audio(wav.read_bytes(), sample_rate=OUTPUT_SAMPLE_RATE)
    speech = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2").tobytes()
    return silence(lead_s) + speech + silence(trail_s)


def frames(pcm: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    return [pcm[start : start + size] for start in range(0, len(pcm), size)]


@dataclass
class RealtimeExchange:
    """What one ``RealtimeSession`` of the Agents SDK went through, event by event."""

    server_events: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    tool_arguments: list[str] = field(default_factory=list)
    tool_outputs: list[Any] = field(default_factory=list)
    audio: dict[str, bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    transcripts: dict[str, str] = field(default_factory=lambda: defaultdict(str))
    input_transcripts: list[str] = field(default_factory=list)
    answered: str | None = None  # the response that spoke, once its response.done came

    def record(self, event: Any) -> None:
        kind = event.type
        if kind == "error":
            self.errors.append(repr(event.error))
        elif kind == "tool_start":
            self.tool_arguments.append(event.arguments)
        elif kind == "tool_end":
            self.tool_outputs.append(event.output)
        elif kind == "audio":
            self.audio[event.audio.response_id or ""] += event.audio.data
        elif kind == "raw_model_event" and event.data.type == "raw_server_event":
            self._server_event(event.data.data)

    def _server_event(self, data: Any) -> None:
        self.server_events.append(data)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "response.output_audio_transcript.delta":
            self.transcripts[data.get("response_id", "")] += data.get("delta", "")
        elif kind == "conversation.item.input_audio_transcription.completed":
            self.input_transcripts.append(data.get("transcript"))
        elif kind == "response.done" and self.tool_outputs:
            response_id = (data.get("response") or {}).get("id", "")
            if self.audio.get(response_id):
                self.answered = response_id

    def types(self) -> list[str]:
        return [e.get("type", "?") if isinstance(e, dict) else "?" for e in self.server_events]

    def describe(self) -> str:
        """The session so far, for a failure message."""
        errors = [e for e in self.server_events if isinstance(e, dict) and e.get("type") == "error"]
        return (
            f"server events: {self.types()}\n"
            f"server error events: {json.dumps(errors)}\n"
            f"SDK errors: {self.errors}\n"
            f"tool calls: {self.tool_arguments} -> {self.tool_outputs}"
        )
