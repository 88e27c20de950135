"""The vllm-omni engine against recorded vLLM-Omni answers, through the official SDK.

Each test runs omnivox with ``--engine vllm-omni`` in front of ``FakeVllmOmni``, which
replays one version's answers as its source writes them (tests/fixtures/vllm_omni/)
and keeps the request bodies it was sent, so that both directions of the translation
are checked: what reaches vLLM-Omni, and what the client gets back.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from omnivox.engines import create_engine
from omnivox.engines.qwen_omni import QWEN_SYSTEM_PROMPT
from omnivox.errors import ModelUnavailableError
from omnivox.settings import Settings
from tests.conftest import sdk_client
from tests.support.fake_vllm_omni import VERSIONS, FakeVllmOmni
from tests.support.live_server import LiveServer, free_port
from tests.support.media import audio_message, ffmpeg_encode, tone_s16le

MODEL = "gpt-4o-audio-preview"
TRANSCRIPT = "Hello! How can I help you today?"
TEXT_TOKENS = 10  # the recorded answers' completion tokens
PROMPT_TOKENS = 57  # and their prompt tokens
VOCODER_PROMPT_TOKENS = 412  # what the first streaming version counts for a spoken answer
QWEN3 = {"2561d0d6", "main-2026"}


@pytest.fixture(params=VERSIONS)
def upstream(request: pytest.FixtureRequest) -> Iterator[FakeVllmOmni]:
    fake = FakeVllmOmni(request.param)
    yield fake
    fake.stop()


@pytest.fixture
def served(upstream: FakeVllmOmni, make_server: Any, tmp_path: Any) -> LiveServer:
    settings = Settings(engine="vllm-omni", upstream=upstream.base_url, data_dir=tmp_path)
    server: LiveServer = make_server(create_engine(settings))
    return server


@pytest.fixture
def client(served: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(served.base_url) as client:
        yield client


def version_of(upstream: FakeVllmOmni) -> str:
    return upstream.folder.name


def recorded_speech(upstream: FakeVllmOmni) -> bytes:
    """The PCM the upstream sends: its streamed speech when it streams, else the whole."""
    if (upstream.folder / "stream.sse").exists():
        pcm = b""
        for event in upstream.recorded("stream.sse").decode().split("\n\n"):
            data = event.removeprefix("data: ")
            if '"modality":"audio"' in data:
                chunk = json.loads(data)
                pcm += wav_pcm(base64.b64decode(chunk["choices"][0]["delta"]["content"]))
        return pcm
    answer = json.loads(upstream.recorded("answer.json"))
    return wav_pcm(base64.b64decode(answer["choices"][1]["message"]["audio"]["data"]))


def wav_pcm(data: bytes, rate: int = 24_000) -> bytes:
    with wave.open(io.BytesIO(data)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, 1, 2)
        return w.readframes(w.getnframes())


def speak(client: openai.OpenAI, messages: list[dict[str, Any]], **extra: Any) -> Any:
    return client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": extra.pop("voice", "alloy"), "format": extra.pop("fmt", "wav")},
        messages=messages,  # type: ignore[arg-type]
        **extra,
    )


def test_a_spoken_answer_is_one_choice_with_its_audio(
    client: openai.OpenAI, upstream: FakeVllmOmni
) -> None:
    completion = speak(client, [{"role": "user", "content": "Hi"}])
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is None
    audio = choice.message.audio
    assert audio is not None and audio.transcript == TRANSCRIPT
    assert audio.id.startswith("audio_") and audio.expires_at > 0
    pcm = wav_pcm(base64.b64decode(audio.data))
    expected = recorded_speech(upstream)
    assert len(pcm) == len(expected) + (-len(expected)) % 6  # serving pads to 6 bytes
    assert pcm[: len(expected)] == expected
    usage = completion.usage
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.text_tokens == TEXT_TOKENS
    assert usage.completion_tokens_details.audio_tokens == math.ceil(len(pcm) / 48_000 * 20)
    assert usage.prompt_tokens_details is not None
    # whole, the upstream's count; streamed, an estimate (never the vocoder's prompt count)
    assert 0 < usage.prompt_tokens_details.text_tokens < VOCODER_PROMPT_TOKENS
    assert usage.prompt_tokens_details.audio_tokens == 0


def test_streamed_speech_arrives_in_pcm16_pieces_of_whole_base64_groups(
    client: openai.OpenAI, upstream: FakeVllmOmni
) -> None:
    transcript, pieces, usage = "", [], None
    for chunk in speak(
        client,
        [{"role": "user", "content": "Hi"}],
        fmt="pcm16",
        stream=True,
        stream_options={"include_usage": True},
    ):
        if chunk.usage is not None:
            usage = chunk.usage
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is not None:
            transcript += audio.transcript or ""
            if audio.data:
                pieces.append(base64.b64decode(audio.data))
    assert transcript == TRANSCRIPT
    assert pieces and all(len(piece) % 6 == 0 for piece in pieces)
    expected = recorded_speech(upstream)
    pcm = b"".join(pieces)
    assert pcm[: len(expected)] == expected and len(pcm) - len(expected) < 6
    assert usage is not None and usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.text_tokens == TEXT_TOKENS
    assert usage.completion_tokens_details.audio_tokens == math.ceil(len(pcm) / 48_000 * 20)


@pytest.mark.parametrize(
    ("voice", "qwen2_5", "qwen3"),
    [("alloy", "Chelsie", "Chelsie"), ("onyx", "Ethan", "Ethan"), ("cedar", "Ethan", "Aiden")],
)
def test_openai_voices_are_sent_as_the_models_speakers(
    client: openai.OpenAI, upstream: FakeVllmOmni, voice: str, qwen2_5: str, qwen3: str
) -> None:
    speak(client, [{"role": "user", "content": "Hi"}], voice=voice)
    assert upstream.bodies[-1]["speaker"] == (qwen3 if version_of(upstream) in QWEN3 else qwen2_5)


def test_an_earlier_answer_goes_back_as_the_assistants_text(
    client: openai.OpenAI, upstream: FakeVllmOmni
) -> None:
    first = speak(client, [{"role": "user", "content": "Hi"}])
    audio = first.choices[0].message.audio
    assert audio is not None
    second = speak(
        client,
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "audio": {"id": audio.id}},
            {"role": "user", "content": "And again?"},
        ],
    )
    assert second.choices[0].message.audio is not None
    messages = upstream.bodies[-1]["messages"]
    if version_of(upstream) not in QWEN3:
        assert messages.pop(0) == {"role": "system", "content": QWEN_SYSTEM_PROMPT}
    assert messages == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": TRANSCRIPT},
        {"role": "user", "content": "And again?"},
    ]
    usage = second.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    # the earlier answer is billed again as audio, at 20 tokens a second of it
    spoken_s = len(wav_pcm(base64.b64decode(audio.data))) / 48_000
    assert usage.prompt_tokens_details.audio_tokens == math.ceil(spoken_s * 20)


def test_the_request_reaches_vllm_omni_in_its_dialect(
    client: openai.OpenAI, upstream: FakeVllmOmni, ffmpeg: str
) -> None:
    heard = ffmpeg_encode(tone_s16le(1.0), "wav")
    speak(
        client,
        [{"role": "system", "content": "Be brief."}, audio_message(heard, "wav", "What is this?")],
        voice="echo",
        temperature=0.7,
        top_p=0.9,
        max_completion_tokens=50,
        stop=["END"],
        seed=7,
        presence_penalty=0.5,
    )
    body = upstream.bodies[0]
    part = body["messages"][1]["content"][1]
    assert part["type"] == "input_audio" and part["input_audio"]["format"] == "wav"
    sent = wav_pcm(base64.b64decode(part["input_audio"]["data"]), rate=16_000)
    assert abs(len(sent) / 32_000 - 1.0) < 0.01  # one second, 16 kHz mono 16-bit
    qwen3 = version_of(upstream) in QWEN3
    system = "Be brief." if qwen3 else f"{QWEN_SYSTEM_PROMPT}\n\nBe brief."
    assert body == {
        "model": upstream.model,
        "messages": [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": [{"type": "text", "text": "What is this?"}, part],
            },
        ],
        "modalities": ["text", "audio"],
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 50,
        "stop": ["END"],
        "seed": 7,
        "presence_penalty": 0.5,
        "speaker": "Ethan",
        "audio": {"format": "wav"},
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_a_text_answer_asks_for_text_alone(client: openai.OpenAI, upstream: FakeVllmOmni) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}]
    )
    assert completion.choices[0].message.content == TRANSCRIPT
    assert completion.choices[0].message.audio is None
    body = upstream.bodies[-1]
    assert body["modalities"] == ["text"] and "speaker" not in body and "audio" not in body
    usage = completion.usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.text_tokens == PROMPT_TOKENS  # the upstream's count
    assert usage.completion_tokens == TEXT_TOKENS


def test_an_answer_that_reaches_max_tokens_is_cut(
    client: openai.OpenAI, upstream: FakeVllmOmni
) -> None:
    completion = speak(
        client, [{"role": "user", "content": "Hi"}], max_completion_tokens=TEXT_TOKENS
    )
    assert completion.choices[0].finish_reason == "length"


def test_a_server_that_can_not_stream_is_asked_for_whole_answers(
    client: openai.OpenAI, upstream: FakeVllmOmni
) -> None:
    for _ in range(2):
        assert speak(client, [{"role": "user", "content": "Hi"}]).choices[0].message.audio
    streamed = [bool(body.get("stream")) for body in upstream.bodies]
    if upstream.source["streams"]:
        assert streamed == [True, True]
    else:  # refused once, then never asked to stream again
        assert streamed == [True, False, False]


def test_a_client_that_leaves_ends_the_upstreams_answer(
    served: LiveServer, upstream: FakeVllmOmni
) -> None:
    if not upstream.source["streams"]:
        pytest.skip("this version answers whole")
    upstream.hold_speech = True
    request = {
        "model": MODEL,
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
        "stream": True,
        "messages": [{"role": "user", "content": "Hi"}],
    }
    url = served.base_url + "/chat/completions"
    with (
        httpx.Client(timeout=10) as http,
        http.stream("POST", url, json=request, headers={"Authorization": "Bearer sk-test"}) as r,
    ):
        for line in r.iter_lines():
            if "transcript" in line:
                break  # the answer has begun; its speech is held back upstream
    assert upstream.gone.wait(5), "the upstream's answer went on after the client left"


def test_the_engine_needs_an_upstream(tmp_path: Any) -> None:
    engine = create_engine(Settings(engine="vllm-omni", data_dir=tmp_path))
    with pytest.raises(ModelUnavailableError, match="--upstream http://"):
        asyncio.run(engine.start())


def test_an_upstream_that_does_not_answer_at_start_is_named(tmp_path: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    engine = create_engine(Settings(engine="vllm-omni", upstream=url, data_dir=tmp_path))
    with pytest.raises(ModelUnavailableError, match="--upstream-model"):
        asyncio.run(engine.start())


def test_an_upstream_that_goes_away_is_a_503_and_named_by_health(
    make_server: Any, tmp_path: Any
) -> None:
    fake = FakeVllmOmni("main-2026")
    settings = Settings(engine="vllm-omni", upstream=fake.base_url, data_dir=tmp_path)
    server = make_server(create_engine(settings))
    fake.stop()
    with sdk_client(server.base_url) as client, pytest.raises(openai.InternalServerError) as err:
        speak(client, [{"role": "user", "content": "Hi"}])
    assert err.value.status_code == 503 and err.value.code == "upstream_unavailable"
    health = httpx.get(server.root + "/health").json()
    assert health["unavailable"] == ["speech-to-speech model"]
