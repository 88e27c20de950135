"""Audio in and audio out, non-streaming: every output format and input container."""

from __future__ import annotations

import base64
import math

import openai
import pytest

from tests.support.fake_engine import WORD_DURATION_S
from tests.support.media import (
    audio_message,
    ffmpeg_decode,
    ffmpeg_encode,
    ffprobe_stream,
    tone_s16le,
)

MODEL = "gpt-4o-audio-preview"
SPOKEN_S = 3 * WORD_DURATION_S  # "You said: hello"
# Lossy encoders add priming and padding samples around the signal.
LENGTH_TOLERANCE_S = {"wav": 0.0, "flac": 0.0, "pcm16": 0.0, "mp3": 0.08, "opus": 0.03, "aac": 0.08}
CONTAINERS = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "ogg", "aac": "aac"}


def spoken(client: openai.OpenAI, fmt: str, content: object = "hello", voice: str = "alloy"):
    return client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": voice, "format": fmt},
        messages=[{"role": "user", "content": content}],
    )


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "opus", "aac", "pcm16"])
def test_every_output_format_decodes_at_24khz_mono(
    client: openai.OpenAI, fmt: str, ffmpeg: str
) -> None:
    completion = spoken(client, fmt)
    message = completion.choices[0].message
    assert message.content is None
    assert message.audio is not None and message.audio.transcript == "You said: hello"
    data = base64.b64decode(message.audio.data)
    if fmt == "pcm16":
        pcm = ffmpeg_decode(data, "pcm16")
    else:
        info = ffprobe_stream(data)
        assert CONTAINERS[fmt] in str(info["format_name"])
        assert info["channels"] == 1
        assert _declared_rate(data, fmt, info) == 24_000
        pcm = ffmpeg_decode(data)
    duration_s = len(pcm) / 48_000
    assert abs(duration_s - SPOKEN_S) <= LENGTH_TOLERANCE_S[fmt] + 1e-9
    if fmt == "wav":
        assert message.audio.data.startswith("UklGR")


def _declared_rate(data: bytes, fmt: str, info: dict[str, object]) -> int:
    if fmt == "opus":  # Opus always decodes at 48 kHz; OpusHead records the input rate
        head = data.index(b"OpusHead")
        return int.from_bytes(data[head + 12 : head + 16], "little")
    return int(str(info["sample_rate"]))


def test_audio_usage_counts_20_tokens_per_second_out(client: openai.OpenAI) -> None:
    usage = spoken(client, "wav").usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.audio_tokens == math.ceil(SPOKEN_S * 20)
    assert usage.completion_tokens_details.text_tokens == 3
    assert usage.completion_tokens == math.ceil(SPOKEN_S * 20) + 3


@pytest.mark.parametrize("fmt", ["wav", "mp3", "flac", "ogg", "opus", "webm", "m4a"])
def test_input_audio_containers_are_decoded(client: openai.OpenAI, fmt: str, ffmpeg: str) -> None:
    data = ffmpeg_encode(tone_s16le(2.0), fmt)
    completion = client.chat.completions.create(model=MODEL, messages=[audio_message(data, fmt)])
    heard_s = float((completion.choices[0].message.content or "").split()[2])
    assert abs(heard_s - 2.0) <= 0.1  # lossy codecs pad a little
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert 20 <= usage.prompt_tokens_details.audio_tokens <= 21  # 10 per second, rounded up


def test_data_uri_audio_is_tolerated(client: openai.OpenAI) -> None:
    data = ffmpeg_encode(tone_s16le(1.0), "wav")
    message = audio_message(data, "wav")
    part = message["content"][0]  # type: ignore[index]
    part["input_audio"]["data"] = "data:audio/wav;base64," + part["input_audio"]["data"]
    completion = client.chat.completions.create(model=MODEL, messages=[message])
    assert completion.choices[0].message.content == "You said: 1.0 seconds of audio"


@pytest.mark.parametrize(
    "voice",
    [
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "fable",
        "nova",
        "onyx",
        "sage",
        "shimmer",
        "verse",
        "marin",
        "cedar",
    ],
)
def test_every_openai_voice_is_accepted(client: openai.OpenAI, voice: str) -> None:
    completion = spoken(client, "pcm16", voice=voice)
    assert completion.choices[0].message.audio is not None


def test_modalities_text_ignores_audio_parameter(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        modalities=["text"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[{"role": "user", "content": "hi"}],
    )
    assert completion.choices[0].message.audio is None
    assert completion.choices[0].message.content == "You said: hi"
