"""POST /v1/audio/transcriptions and /translations through the official SDK.

The fake engine hears one segment per second of sound ("Second 1." ...), so
every response format can be checked exactly; what a real recogniser hears is
tested in tests/engine/test_cascade_audio.py and test_audio_endpoints_real.py.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import sdk_client
from tests.support.live_server import LiveServer
from tests.support.media import ffmpeg_encode, tone_s16le


@pytest.fixture(scope="module")
def wav() -> bytes:
    return ffmpeg_encode(tone_s16le(3.0), "wav")


def transcribe(client: openai.OpenAI, data: bytes, **kwargs: Any) -> Any:
    args: dict[str, Any] = {"model": "whisper-1", "file": ("tone.wav", data), **kwargs}
    return client.audio.transcriptions.create(**args)


def test_json_gives_the_text_and_usage(client: openai.OpenAI, wav: bytes) -> None:
    answer = transcribe(client, wav, model="gpt-4o-transcribe")
    assert answer.text == "Second 1. Second 2. Second 3."
    assert answer.usage is not None and answer.usage.type == "tokens"
    assert answer.usage.input_token_details.audio_tokens == 30  # 10 per second
    assert answer.usage.output_tokens == 6
    assert answer.usage.total_tokens == answer.usage.input_tokens + 6


def test_whisper_1_reports_usage_as_duration(client: openai.OpenAI, wav: bytes) -> None:
    answer = transcribe(client, wav)
    assert answer.usage is not None and answer.usage.type == "duration"
    assert answer.usage.seconds == 3


def test_text_is_plain_text(client: openai.OpenAI, wav: bytes) -> None:
    assert transcribe(client, wav, response_format="text") == "Second 1. Second 2. Second 3.\n"


def test_srt_cues_are_numbered_with_comma_millis(client: openai.OpenAI, wav: bytes) -> None:
    srt = transcribe(client, wav, response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:01,000\nSecond 1.\n\n2\n")
    assert re.findall(r"^\d+$", srt, flags=re.M) == ["1", "2", "3"]


def test_vtt_has_its_header_and_dot_millis(client: openai.OpenAI, wav: bytes) -> None:
    vtt = transcribe(client, wav, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nSecond 1.\n")
    assert "00:00:02.000 --> 00:00:03.000\nSecond 3." in vtt


def test_verbose_json_has_segments_and_word_times(client: openai.OpenAI, wav: bytes) -> None:
    answer = transcribe(
        client,
        wav,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert answer.language == "english"
    assert answer.duration == 3.0
    assert answer.text == "Second 1. Second 2. Second 3."
    assert [s.text for s in answer.segments] == ["Second 1.", "Second 2.", "Second 3."]
    assert [(s.start, s.end) for s in answer.segments] == [(0, 1), (1, 2), (2, 3)]
    assert [w.word for w in answer.words] == ["Second", "1.", "Second", "2.", "Second", "3."]
    starts = [w.start for w in answer.words]
    assert starts == sorted(starts) and all(w.end > w.start for w in answer.words)
    assert answer.usage is not None and answer.usage.seconds == 3


def test_verbose_json_with_words_only_lists_no_segments(client: openai.OpenAI, wav: bytes) -> None:
    answer = transcribe(
        client, wav, response_format="verbose_json", timestamp_granularities=["word"]
    )
    assert answer.segments is None and answer.words is not None


def test_streaming_gives_a_delta_per_segment_then_done(client: openai.OpenAI, wav: bytes) -> None:
    events = list(transcribe(client, wav, model="gpt-4o-mini-transcribe", stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert "".join(d.delta for d in deltas) == "Second 1. Second 2. Second 3."
    assert len(deltas) == 3
    done = events[-1]
    assert done.type == "transcript.text.done"
    assert done.text == "Second 1. Second 2. Second 3."
    assert done.usage is not None and done.usage.output_tokens == 6


def test_logprobs_are_given_per_word_when_included(client: openai.OpenAI, wav: bytes) -> None:
    answer = transcribe(client, wav, model="gpt-4o-transcribe", include=["logprobs"])
    assert answer.logprobs is not None and len(answer.logprobs) == 6
    assert all(lp.logprob is not None and lp.logprob < 0 for lp in answer.logprobs)


def test_silence_is_an_empty_transcript(client: openai.OpenAI) -> None:
    silence = ffmpeg_encode(bytes(48_000), "wav")
    assert transcribe(client, silence).text == ""


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg", "webm", "m4a"])
def test_every_container_ffmpeg_reads_is_transcribed(client: openai.OpenAI, fmt: str) -> None:
    data = ffmpeg_encode(tone_s16le(2.0), fmt)
    assert transcribe(client, data).text.startswith("Second 1.")


def translate(client: openai.OpenAI, data: bytes, **kwargs: Any) -> Any:
    """The SDK marks translations deprecated; the endpoint is still OpenAI's and served."""
    with pytest.warns(DeprecationWarning):
        return client.audio.translations.create(
            model="whisper-1", file=("tone.wav", data), **kwargs
        )


def test_translation_answers_in_english(client: openai.OpenAI, wav: bytes) -> None:
    assert translate(client, wav).text.startswith("Translated: Second 1.")
    verbose = translate(client, wav, response_format="verbose_json")
    assert verbose.language == "english" and len(verbose.segments or []) == 3
    assert translate(client, wav, response_format="srt").startswith("1\n00:00:00,000 --> ")


# ---- bad input -------------------------------------------------------------------------------


def _error(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value


def test_a_file_that_is_not_audio_is_a_400_on_file(client: openai.OpenAI, wav: bytes) -> None:
    error = _error(lambda: transcribe(client, b"this is not audio at all" * 100))
    assert error.status_code == 400
    assert error.body["param"] == "file"  # type: ignore[index]
    assert transcribe(client, wav).text  # still serving


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"response_format": "diarized_json"}, "response_format"),
        ({"temperature": 1.5}, "temperature"),
        ({"timestamp_granularities": ["word"]}, "timestamp_granularities"),
        ({"language": "english!"}, "language"),
    ],
)
def test_bad_fields_are_a_400_naming_the_param(
    client: openai.OpenAI, wav: bytes, kwargs: dict[str, Any], param: str
) -> None:
    error = _error(lambda: transcribe(client, wav, **kwargs))
    assert error.status_code == 400
    assert error.body["param"] == param  # type: ignore[index]


def _post(server: LiveServer, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.base_url + path, **kwargs)


def test_a_missing_file_or_model_is_a_400(fake_server: LiveServer, wav: bytes) -> None:
    no_file = _post(
        fake_server,
        "/audio/transcriptions",
        files={"model": (None, "whisper-1")},
    )
    assert no_file.status_code == 400
    assert no_file.json()["error"]["param"] == "file"
    no_model = _post(fake_server, "/audio/transcriptions", files={"file": ("a.wav", wav)})
    assert no_model.status_code == 400
    assert no_model.json()["error"]["param"] == "model"
    assert no_model.json()["error"]["code"] == "missing_required_parameter"


@pytest.mark.parametrize(
    "body",
    [
        b"--x\r\nContent-Disposition: form-data; name[=\r\n\r\nv\r\n--x--\r\n",
        b"--x\r\n\x00\xff",
        b"",
    ],
)
def test_a_broken_form_is_a_400_in_openai_shape(fake_server: LiveServer, body: bytes) -> None:
    response = _post(
        fake_server,
        "/audio/transcriptions",
        content=body,
        headers={"content-type": "multipart/form-data; boundary=x"},
    )
    assert response.status_code == 400
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_a_json_body_is_a_400_asking_for_a_form(fake_server: LiveServer) -> None:
    response = _post(fake_server, "/audio/transcriptions", json={"model": "whisper-1"})
    assert response.status_code == 400
    assert "multipart/form-data" in response.json()["error"]["message"]


@pytest.mark.parametrize("model", ["nope", "tts-1"])
def test_a_model_that_does_not_transcribe_is_a_404(
    client: openai.OpenAI, wav: bytes, model: str
) -> None:
    error = _error(lambda: transcribe(client, wav, model=model))
    assert error.status_code == 404
    assert error.body["code"] == "model_not_found"  # type: ignore[index]


def test_input_longer_than_the_limit_is_a_400(make_server: Any) -> None:
    server = make_server(max_input_audio_s=2.0)
    data = ffmpeg_encode(tone_s16le(3.0), "wav")
    with sdk_client(server.base_url) as client:
        error = _error(lambda: transcribe(client, data))
    assert error.status_code == 400
    assert error.body["code"] == "audio_too_long"  # type: ignore[index]
    assert error.body["param"] == "file"  # type: ignore[index]


def test_a_file_past_the_body_cap_is_a_413(make_server: Any) -> None:
    server = make_server(max_body_bytes=64 * 1024)
    data = ffmpeg_encode(tone_s16le(3.0), "wav")  # 144 KB
    with sdk_client(server.base_url) as client:
        error = _error(lambda: transcribe(client, data))
        assert error.status_code == 413
        assert error.response.headers["x-request-id"].startswith("req_")
        assert transcribe(client, ffmpeg_encode(tone_s16le(1.0), "wav")).text  # serving on


def test_a_transcription_model_is_not_a_chat_model(client: openai.OpenAI) -> None:
    error = _error(
        lambda: client.chat.completions.create(
            model="whisper-1", messages=[{"role": "user", "content": "hi"}]
        )
    )
    assert error.status_code == 404
    assert "not served on /v1/chat/completions" in error.message
