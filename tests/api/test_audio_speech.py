"""POST /v1/audio/speech through the official SDK: every format, speed, SSE, streaming, errors."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import sdk_client
from tests.support.fake_engine import WORD_DURATION_S, FakeEngine
from tests.support.live_server import LiveServer
from tests.support.media import ffmpeg_decode, ffprobe_stream

TEXT = "hello there world"
SPOKEN_S = 3 * WORD_DURATION_S
# Lossy encoders add priming and padding samples around the signal.
LENGTH_TOLERANCE_S = {"wav": 0.0, "flac": 0.0, "pcm": 0.0, "mp3": 0.08, "opus": 0.03, "aac": 0.08}
CONTAINERS = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "ogg", "aac": "aac"}
MEDIA_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speech(
    client: openai.OpenAI, **kwargs: Any
) -> openai._legacy_response.HttpxBinaryResponseContent:
    args: dict[str, Any] = {"model": "tts-1", "voice": "alloy", "input": TEXT, **kwargs}
    return client.audio.speech.create(**args)


def seconds(data: bytes, fmt: str) -> float:
    pcm = ffmpeg_decode(data, "pcm16") if fmt == "pcm" else ffmpeg_decode(data)
    return len(pcm) / 48_000


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_every_format_decodes_by_ffmpeg_at_24khz_with_the_length_spoken(
    client: openai.OpenAI, fmt: str, ffmpeg: str
) -> None:
    with client.audio.speech.with_streaming_response.create(
        model="tts-1", voice="alloy", input=TEXT, response_format=fmt
    ) as response:
        assert response.headers["content-type"].startswith(MEDIA_TYPES[fmt])
        assert response.headers["x-request-id"].startswith("req_")
        data = response.read()
    if fmt != "pcm":
        info = ffprobe_stream(data)
        assert CONTAINERS[fmt] in str(info["format_name"])
        assert info["channels"] == 1
        if fmt != "opus":  # Opus always decodes at 48 kHz
            assert int(str(info["sample_rate"])) == 24_000
    assert abs(seconds(data, fmt) - SPOKEN_S) <= LENGTH_TOLERANCE_S[fmt] + 1e-9


def test_mp3_is_the_default(client: openai.OpenAI, ffmpeg: str) -> None:
    data = speech(client).content
    assert "mp3" in str(ffprobe_stream(data)["format_name"])


@pytest.mark.parametrize("model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "omnivox-audio"])
def test_openai_speech_models_and_the_served_model_read_aloud(
    client: openai.OpenAI, model: str
) -> None:
    assert len(speech(client, model=model, response_format="pcm").content) > 0


def test_speed_changes_the_length(client: openai.OpenAI) -> None:
    slow = len(speech(client, response_format="pcm", speed=0.5).content)
    fast = len(speech(client, response_format="pcm", speed=2.0).content)
    assert slow == pytest.approx(4 * fast, rel=0.01)


def test_a_voice_object_and_instructions_are_accepted(client: openai.OpenAI) -> None:
    plain = speech(client, response_format="pcm").content
    given = speech(
        client, response_format="pcm", voice={"id": "alloy"}, instructions="Speak cheerfully."
    ).content
    assert given == plain


def test_sse_gives_audio_deltas_then_done_with_usage(client: openai.OpenAI) -> None:
    whole = speech(client, response_format="pcm").content
    body = speech(client, response_format="pcm", stream_format="sse").content.decode()
    events = [line.removeprefix("data: ") for line in body.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    deltas, done = parsed[:-1], parsed[-1]
    assert deltas and all(e["type"] == "speech.audio.delta" for e in deltas)
    assert b"".join(base64.b64decode(e["audio"]) for e in deltas) == whole
    assert done["type"] == "speech.audio.done"
    usage = done["usage"]
    assert usage["input_tokens"] == 3  # the fake engine counts words
    assert usage["output_tokens"] == math.ceil(SPOKEN_S * 20)
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_the_first_bytes_leave_before_the_reading_ends(
    make_server: Callable[..., LiveServer],
) -> None:
    engine = FakeEngine()
    server = make_server(engine)
    with (
        sdk_client(server.base_url) as client,
        client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="alloy", input="one hold two three", response_format="pcm"
        ) as response,
    ):
        chunks = response.iter_bytes()
        first = next(chunks)
        # The engine is held after its second word: what arrived was made before the end.
        assert first and engine.finished_generations == 0 and engine.active_generations == 1
        engine.released.set()
        rest = b"".join(chunks)
    assert len(first + rest) == 4 * WORD_DURATION_S * 48_000
    assert engine.finished_generations == 1


def _error(client: openai.OpenAI, **kwargs: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        speech(client, **kwargs)
    return caught.value


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": "x" * 4097}, "input"),
        ({"speed": 0.2}, "speed"),
        ({"speed": 4.5}, "speed"),
        ({"response_format": "ogg"}, "response_format"),
        ({"voice": "bob"}, "voice"),
        ({"stream_format": "chunks"}, "stream_format"),
    ],
)
def test_bad_input_is_a_400_naming_the_param(
    client: openai.OpenAI, kwargs: dict[str, Any], param: str
) -> None:
    error = _error(client, **kwargs)
    assert error.status_code == 400
    assert error.body["param"] == param  # type: ignore[index]
    assert error.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert len(speech(client, response_format="pcm").content) > 0  # still serving


@pytest.mark.parametrize("model", ["no-such-model", "whisper-1"])
def test_a_model_that_does_not_read_aloud_is_a_404(client: openai.OpenAI, model: str) -> None:
    error = _error(client, model=model)
    assert error.status_code == 404
    assert error.body["code"] == "model_not_found"  # type: ignore[index]


def test_a_body_that_is_not_json_is_a_415(fake_server: LiveServer) -> None:
    response = httpx.post(
        fake_server.base_url + "/audio/speech",
        content=b"model=tts-1",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 415
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_unknown_fields_are_ignored_as_openai_does(fake_server: LiveServer) -> None:
    response = httpx.post(
        fake_server.base_url + "/audio/speech",
        json={"model": "tts-1", "voice": "alloy", "input": "hi", "sample_rate": 16000},
    )
    assert response.status_code == 200


def test_an_engine_that_can_not_read_aloud_answers_404_saying_so(
    make_server: Callable[..., LiveServer],
) -> None:
    engine = FakeEngine()
    engine.capabilities = frozenset({"speech"})
    with sdk_client(make_server(engine).base_url) as client:
        error = _error(client, model="omnivox-audio")
        assert error.status_code == 404
        assert "not served on /v1/audio/speech" in error.message
        assert _error(client, model="tts-1").status_code == 404  # not offered at all
        assert "tts-1" not in {m.id for m in client.models.list()}
