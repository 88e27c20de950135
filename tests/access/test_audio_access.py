"""The audio endpoints under keys: refused without one, rate-limited, and in the usage ledger."""

from __future__ import annotations

import json
import math
from pathlib import Path

import openai
import pytest

from omnivox.cli import main
from tests.access.conftest import keyed_client, make_key
from tests.access.test_api_limits import ledger_rows
from tests.support.fake_engine import WORD_DURATION_S
from tests.support.media import ffmpeg_encode, tone_s16le


def test_audio_endpoints_need_a_key(keyed_server, tmp_path: Path) -> None:
    make_key(tmp_path, "someone")
    client = keyed_client(keyed_server().base_url, "sk-wrong")
    with pytest.raises(openai.AuthenticationError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="hi")
    with pytest.raises(openai.AuthenticationError):
        client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF"))


def test_speech_and_transcription_are_rate_limited_with_openai_headers(
    keyed_server, tmp_path: Path
) -> None:
    key = make_key(tmp_path, "ci", tier="1", rpm=2)
    client = keyed_client(keyed_server().base_url, key)
    first = client.audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input="one two", response_format="pcm"
    )
    first.parse().read()
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    wav = ffmpeg_encode(tone_s16le(2.0), "wav")
    second = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=("a.wav", wav),  # the same model class as tts-1: one meter
    )
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    with pytest.raises(openai.RateLimitError) as caught:
        client.audio.speech.create(model="tts-1", voice="alloy", input="three")
    assert "retry-after" in caught.value.response.headers
    assert "requests per min (RPM)" in caught.value.message


def test_each_request_is_in_the_ledger_with_its_tokens_and_in_omnivox_usage(
    keyed_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = make_key(tmp_path, "ledger", tier="5")
    client = keyed_client(keyed_server().base_url, key)
    client.audio.speech.create(
        model="gpt-4o-mini-tts", voice="alloy", input="one two three", response_format="pcm"
    ).read()
    wav = ffmpeg_encode(tone_s16le(3.0), "wav")
    client.audio.transcriptions.create(model="whisper-1", file=("a.wav", wav))
    with pytest.raises(openai.BadRequestError):
        client.audio.speech.create(model="tts-1", voice="alloy", input="")
    rows = {row.model: row for row in ledger_rows(tmp_path)}
    speech = rows["gpt-4o-mini-tts"]
    assert speech.status == "completed"
    assert speech.prompt_text_tokens == 3
    assert speech.completion_audio_tokens == math.ceil(3 * WORD_DURATION_S * 20)
    assert speech.model_class == "gpt-4o-mini-audio" and speech.cost_usd > 0
    heard = rows["whisper-1"]
    assert heard.status == "completed"
    assert heard.prompt_audio_tokens == 30 and heard.completion_text_tokens == 6
    assert rows["tts-1"].status == "rejected"
    assert main(["usage", "--json", "--key", "ledger", "--data-dir", str(tmp_path)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"] == 3
    assert summary["statuses"] == {"completed": 2, "rejected": 1}
