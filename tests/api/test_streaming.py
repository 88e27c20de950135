"""Streaming as §3.3 says, checked on the raw SSE bytes and through the SDK."""

from __future__ import annotations

import base64
import io
import json
import time
import wave
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from omnivox.engines.base import PreparedGeneration
from omnivox.engines.events import AudioDelta, EngineEvent
from tests.conftest import sdk_client
from tests.support.clients import tracked
from tests.support.fake_engine import WORD_DURATION_S, FakeEngine
from tests.support.media import ffmpeg_decode

MODEL = "gpt-4o-audio-preview"
AUDIO = {"voice": "alloy", "format": "pcm16"}


def raw_events(base_url: str, body: dict[str, Any]) -> list[str]:
    with httpx.stream("POST", base_url + "/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events)
    return [e.removeprefix("data: ") for e in events]


def audio_request(content: str = "hello there", **extra: Any) -> dict[str, Any]:
    return {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": AUDIO,
        "stream": True,
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def test_audio_stream_follows_the_recommended_sequence(fake_server) -> None:
    events = raw_events(fake_server.base_url, audio_request(stream_options={"include_usage": True}))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and len({c["created"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
    }
    assert all("role" not in c["choices"][0]["delta"] for c in chunks[1:] if c["choices"])
    body = [c for c in chunks if c["choices"]]
    assert all(c["usage"] is None for c in body)
    deltas = [c["choices"][0]["delta"] for c in body]
    audio = [d["audio"] for d in deltas if "audio" in d]
    assert all("content" not in d or d["content"] is None for d in deltas)
    ids = [a["id"] for a in audio if "id" in a]
    assert len(ids) == 1 and audio[0].get("id") == ids[0]
    expiries = [a for a in audio if "expires_at" in a]
    assert expiries == [audio[-1]] and set(audio[-1]) == {"expires_at"}
    finishes = [c["choices"][0]["finish_reason"] for c in body if c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"] and body[-1]["choices"][0]["finish_reason"] == "stop"
    for piece in (a["data"] for a in audio if "data" in a):
        assert len(base64.b64decode(piece)) % 6 == 0 and "=" not in piece
    usage = chunks[-1]
    assert (
        usage["choices"] == [] and usage["usage"]["completion_tokens_details"]["audio_tokens"] > 0
    )


def test_concatenated_pcm16_decodes_to_the_spoken_length(fake_server, ffmpeg: str) -> None:
    events = raw_events(fake_server.base_url, audio_request("count to 7"))
    chunks = [json.loads(e) for e in events[:-1]]
    joined = "".join(c["choices"][0]["delta"].get("audio", {}).get("data", "") for c in chunks)
    pcm = base64.b64decode(joined, validate=True)  # the joined base64 string is itself valid
    assert len(pcm) == 7 * WORD_DURATION_S * 24_000 * 2
    assert ffmpeg_decode(pcm, "pcm16") == pcm


def test_text_stream_has_content_deltas_and_no_audio(fake_server) -> None:
    events = raw_events(
        fake_server.base_url,
        {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )
    chunks = [json.loads(e) for e in events[:-1]]
    assert all("usage" not in c for c in chunks)  # only with include_usage
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == "You said: hi"
    assert not any("audio" in c["choices"][0]["delta"] for c in chunks)


def test_streamed_transcript_and_audio_equal_the_non_streamed(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "the same words twice"}]
    one_shot = client.chat.completions.create(
        model=MODEL, temperature=0, modalities=["text", "audio"], audio=AUDIO, messages=messages
    )
    transcript, pcm = "", b""
    for chunk in client.chat.completions.create(
        model=MODEL,
        temperature=0,
        modalities=["text", "audio"],
        audio=AUDIO,
        messages=messages,
        stream=True,
    ):
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is not None:
            transcript += audio.transcript or ""
            pcm += base64.b64decode(audio.data or "")
    assert one_shot.choices[0].message.audio is not None
    assert transcript == one_shot.choices[0].message.audio.transcript
    assert pcm == base64.b64decode(one_shot.choices[0].message.audio.data)


def test_stream_helper_ends_with_one_clean_audio_id(client: openai.OpenAI) -> None:
    with client.chat.completions.stream(
        model=MODEL,
        modalities=["text", "audio"],
        audio=AUDIO,
        messages=[{"role": "user", "content": "hello"}],
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    audio = final.choices[0].message.audio
    assert audio is not None
    assert audio.id.startswith("audio_") and len(audio.id) == len("audio_") + 32
    assert audio.transcript == "You said: hello"
    assert audio.expires_at > time.time() + 3000
    assert len(base64.b64decode(audio.data)) == 3 * WORD_DURATION_S * 48_000


def test_streaming_a_format_other_than_pcm16_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            stream=True,
            messages=[{"role": "user", "content": "hi"}],
        )
    assert err.value.body == {
        "message": "Unsupported value: 'audio.format' does not support 'wav' when stream=true. "
        "Supported values are: 'pcm16'.",
        "type": "invalid_request_error",
        "param": "audio.format",
        "code": "unsupported_value",
    }


def test_an_error_after_the_first_byte_is_an_sse_error_event(client: openai.OpenAI) -> None:
    received = []
    with pytest.raises(openai.APIError) as err:
        for chunk in client.chat.completions.create(
            model=MODEL, stream=True, messages=[{"role": "user", "content": "fail after one word"}]
        ):
            received.append(chunk)
    assert received, "the stream had started before the error"
    assert "Sorry about that" in err.value.message
    # ... and the server keeps serving
    ok = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content == "You said: hi"


def test_first_audio_leaves_before_the_answer_is_complete(fake_server) -> None:
    client = tracked(openai.OpenAI(base_url=fake_server.base_url, api_key="sk-test", max_retries=0))
    engine = fake_server.engine
    finished_before = engine.finished_generations
    still_generating_at_first_audio = None
    for chunk in client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio=AUDIO,
        stream=True,
        messages=[{"role": "user", "content": "slow words arrive one by one"}],
    ):
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is not None and audio.data and still_generating_at_first_audio is None:
            still_generating_at_first_audio = engine.finished_generations == finished_before
    assert still_generating_at_first_audio is True
    assert engine.finished_generations == finished_before + 1


class OddLengthEngine(FakeEngine):
    """Speaks each word one sample longer than the last: answers of every length mod 6."""

    async def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        n_extra = 0
        async for event in super().generate(prepared):
            if isinstance(event, AudioDelta):
                n_extra += 1
                event = AudioDelta(event.pcm_s16le + bytes(2 * n_extra))
            yield event


@pytest.mark.parametrize("n_words", [1, 2, 3, 4, 5, 6])
def test_every_data_fragment_is_whole_base64_groups_the_last_too(make_server, n_words: int) -> None:
    """Concatenated fragments are valid base64 of the whole answer only if none is padded."""
    server = make_server(engine=OddLengthEngine())
    events = raw_events(server.base_url, audio_request(" ".join(["word"] * n_words)))
    fragments = [
        choice["delta"]["audio"]["data"]
        for event in events[:-1]  # the last is [DONE]
        for choice in json.loads(event).get("choices", [])
        if (choice["delta"].get("audio") or {}).get("data")
    ]
    assert fragments
    for fragment in fragments:
        assert "=" not in fragment
        assert len(base64.b64decode(fragment)) % 6 == 0
    streamed = base64.b64decode("".join(fragments))
    completion = sdk_client(server.base_url).chat.completions.create(
        **{
            **audio_request(" ".join(["word"] * n_words)),
            "stream": False,
            "audio": {"voice": "alloy", "format": "wav"},
        }
    )
    with wave.open(io.BytesIO(base64.b64decode(completion.choices[0].message.audio.data))) as wav:
        assert wav.getnframes() * 2 == len(streamed)  # folded and streamed audio agree
