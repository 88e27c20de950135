"""The audio endpoints on the real cascade, through the official SDK: what a user hears and reads.

Speech is decoded by ffmpeg; questions are said by espeak-ng (another voice than the
server's own) and written down in every response format. Assertions are on robust
keywords and on shapes, never on exact words a different CPU could change.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from devtools.wer import word_error_rate
from omnivox.engines.cascade.engine import CascadeEngine
from tests.conftest import sdk_client
from tests.engine.conftest import lend
from tests.support.live_server import LiveServer
from tests.support.media import ffmpeg_decode, ffprobe_stream

pytestmark = pytest.mark.engine

QUESTION = "What should I pack for a day at the beach?"
GERMAN = "Guten Morgen. Ich trinke jeden Tag Kaffee mit Milch."
TIME = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


@pytest.fixture(scope="module")
def server(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("audio-endpoints"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(server.base_url) as client:
        yield client


def seconds(stamp: str) -> float:
    h, m, s, ms = (int(x) for x in TIME.fullmatch(stamp).groups())  # type: ignore[union-attr]
    return 3600 * h + 60 * m + s + ms / 1000


def test_speech_is_a_real_voice_at_24khz_and_speed_changes_its_length(
    client: openai.OpenAI, ffmpeg: str
) -> None:
    text = "Please bring a warm blanket to the picnic."
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="wav"
    ).content
    info = ffprobe_stream(wav)
    assert int(str(info["sample_rate"])) == 24_000 and info["channels"] == 1
    spoken_s = len(ffmpeg_decode(wav)) / 48_000
    assert 1.0 < spoken_s < 6.0
    slow = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm", speed=0.5
    ).content
    fast = client.audio.speech.create(
        model="tts-1", voice="alloy", input=text, response_format="pcm", speed=2.0
    ).content
    assert len(slow) > 2 * len(fast)


def test_speech_events_carry_the_audio_and_usage(client: openai.OpenAI) -> None:
    body = client.audio.speech.create(
        model="gpt-4o-mini-tts",
        voice="coral",
        input="Good morning. The sea is calm today, and the sun is warm.",
        response_format="pcm",
        stream_format="sse",
    ).content.decode()
    events = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n")[:-2]]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 1  # made and sent a window at a time
    pcm = b"".join(base64.b64decode(e["audio"]) for e in deltas)
    usage = events[-1]["usage"]
    assert events[-1]["type"] == "speech.audio.done"
    assert usage["output_tokens"] == -(-len(pcm) * 20 // 48_000)
    assert usage["input_tokens"] > 5


def test_a_spoken_question_is_written_down_in_every_format(
    client: openai.OpenAI, espeak: Any
) -> None:
    wav = espeak(QUESTION)
    file = ("question.wav", wav)
    text = client.audio.transcriptions.create(model="whisper-1", file=file).text
    assert "beach" in text.lower()
    plain = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="text")
    assert "beach" in plain.lower() and plain.endswith("\n")
    srt = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="srt")
    lines = srt.split("\n")
    start, arrow, end = lines[1].split(" ")
    assert lines[0] == "1" and arrow == "-->" and "beach" in lines[2].lower()
    assert seconds(start) < seconds(end) <= 4.0
    vtt = client.audio.transcriptions.create(model="whisper-1", file=file, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and "beach" in vtt.lower()
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=file,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english"
    assert 1.5 < verbose.duration < 5.0
    assert verbose.words and any("beach" in w.word.lower() for w in verbose.words)
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= verbose.duration + 0.5 for w in verbose.words)
    assert verbose.segments and verbose.segments[0].tokens


def test_a_transcription_streams_its_segments(client: openai.OpenAI, espeak: Any) -> None:
    events = list(
        client.audio.transcriptions.create(
            model="gpt-4o-transcribe", file=("q.wav", espeak(QUESTION)), stream=True
        )
    )
    assert events[0].type == "transcript.text.delta"
    done = events[-1]
    assert done.type == "transcript.text.done" and "beach" in done.text.lower()
    assert "".join(e.delta for e in events[:-1]) == done.text
    assert done.usage is not None and done.usage.input_token_details is not None
    assert done.usage.input_token_details.audio_tokens >= 15  # about 2.5 s at 10 per second


def test_german_is_translated_into_english(client: openai.OpenAI, espeak: Any) -> None:
    with pytest.warns(DeprecationWarning):  # the SDK marks translations deprecated
        answer = client.audio.translations.create(
            model="whisper-1", file=("de.wav", espeak(GERMAN, "de"))
        )
    assert "coffee" in answer.text.lower()


def test_the_voice_read_back_by_the_recogniser_keeps_its_words(client: openai.OpenAI) -> None:
    sentences = ["Paris is the capital of France.", "The train leaves the station at seven."]
    for sentence in sentences:
        spoken = client.audio.speech.create(
            model="tts-1", voice="alloy", input=sentence, response_format="flac"
        ).content
        heard = client.audio.transcriptions.create(
            model="whisper-1", file=("s.flac", spoken), response_format="text"
        )
        assert word_error_rate(sentence, heard) <= 0.35, (sentence, heard)


def test_the_endpoints_list_their_models(client: openai.OpenAI) -> None:
    names = {m.id for m in client.models.list()}
    assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "whisper-1", "gpt-4o-transcribe"} <= names
