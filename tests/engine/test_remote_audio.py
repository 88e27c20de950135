"""The cascade's recogniser and voice on another server: a front omnivox whose --asr and
--tts are the URLs of a second, in-process omnivox (the real cascade) hears and speaks
through it, with its own chat model embedded.

The front's recogniser and voice pools list a closed port first, so every request also
shows that an upstream that can not be reached is passed over. A front whose upstreams
are all down still starts and answers 503 ``upstream_unavailable``. Assertions are on
robust keywords and shapes, never on exact words.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from devtools.serve import free_port
from omnivox.audio import INPUT_SAMPLE_RATE, decode_audio
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.engines.cascade.listening.remote import RemoteRecogniser, verbose_events
from omnivox.engines.cascade.speaking.remote import RemoteVoice
from omnivox.engines.events import TranscriptionFinished, TranscriptionStarted, TranscriptSegment
from omnivox.engines.upstream import UpstreamPool
from omnivox.settings import Settings
from tests.conftest import sdk_client
from tests.engine.conftest import lend
from tests.support.live_server import LiveServer, start_server
from tests.support.media import audio_message, ffmpeg_decode, ffprobe_stream

pytestmark = pytest.mark.engine

MODEL = "gpt-4o-audio-preview"
QUESTION = "What should I pack for a day at the beach?"
GERMAN = "Guten Morgen. Ich trinke jeden Tag Kaffee mit Milch."
READING = "The lighthouse keeper climbed the stairs at dusk. He lit the lamp and watched the sea."


@pytest.fixture(scope="module")
def closed_url() -> str:
    """A loopback port nothing listens on: an upstream that can not be reached."""
    return f"http://127.0.0.1:{free_port()}/v1"


@pytest.fixture(scope="module")
def upstream(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("audio-upstream"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def front(
    upstream: LiveServer,
    closed_url: str,
    models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveServer]:
    urls = f"{closed_url},{upstream.base_url}"
    engine = CascadeEngine(Settings(asr=urls, tts=urls, cache_dir=models_dir, threads=2))
    live = start_server(engine, tmp_path_factory.mktemp("audio-front"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(front: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(front.base_url) as client:
        yield client


def test_the_front_holds_no_recogniser_or_voice_and_names_no_url(front: LiveServer) -> None:
    engine = front.engine
    assert isinstance(engine.listener.recogniser, RemoteRecogniser)
    assert isinstance(engine.synthesizer, RemoteVoice)
    # the closed port was asked at start and left rotation; the live upstream is in it
    healthy = [u["healthy"] for u in engine.listener.recogniser.pool.status()]
    assert healthy == [False, True]
    health = httpx.get(front.root + "/health")
    assert health.status_code == 200
    assert health.json()["models"] == ["whisper-1", "smollm2", "tts-1"]
    assert "127.0.0.1" not in health.text


def test_a_spoken_question_is_heard_and_answered_aloud_through_the_upstream(
    client: openai.OpenAI, front: LiveServer, espeak: Any, ffmpeg: str
) -> None:
    wav = espeak(QUESTION)
    completion = client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
        messages=[audio_message(wav, "wav")],  # type: ignore[list-item]
        max_completion_tokens=40,
        temperature=0,
        seed=7,
    )
    heard = front.engine.transcripts.recogniser.transcribe(
        decode_audio(wav, sample_rate=INPUT_SAMPLE_RATE)
    )
    assert "beach" in heard.lower()
    audio = completion.choices[0].message.audio
    assert audio is not None
    assert "beach" in audio.transcript.lower()
    pcm = ffmpeg_decode(base64.b64decode(audio.data))
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768
    assert len(samples) / 24_000 > 1.0
    assert float(np.sqrt(np.mean(samples**2))) > 0.01  # a voice, not silence


def test_speech_is_read_by_the_upstream_and_streamed(client: openai.OpenAI, ffmpeg: str) -> None:
    wav = client.audio.speech.create(
        model="tts-1", voice="alloy", input=READING, response_format="wav"
    ).content
    info = ffprobe_stream(wav)
    assert int(str(info["sample_rate"])) == 24_000 and info["channels"] == 1
    assert 2.0 < len(ffmpeg_decode(wav)) / 48_000 < 15.0
    body = client.audio.speech.create(
        model="tts-1", voice="coral", input=READING, response_format="pcm", stream_format="sse"
    ).content.decode()
    events = [json.loads(e.removeprefix("data: ")) for e in body.split("\n\n")[:-2]]
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) > 2 and events[-1]["type"] == "speech.audio.done"


def test_the_voice_passes_each_chunk_on_as_it_arrives(upstream: LiveServer) -> None:
    voice = RemoteVoice(UpstreamPool([upstream.base_url], part="voice"), "tts-1")
    try:
        pieces = list(voice.synthesize(READING, "alloy"))
    finally:
        voice.close()
    # the upstream speaks a window at a time: several chunks, each its own piece
    assert len(pieces) > 2
    assert all(p.sample_rate == 24_000 and p.samples.dtype == np.float32 for p in pieces)
    assert sum(len(p.samples) for p in pieces) / 24_000 > 2.0


def test_recordings_are_written_down_by_the_upstream(client: openai.OpenAI, espeak: Any) -> None:
    file = ("question.wav", espeak(QUESTION))
    assert "beach" in client.audio.transcriptions.create(model="whisper-1", file=file).text.lower()
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=file,
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.language == "english" and "beach" in verbose.text.lower()
    assert verbose.segments and verbose.segments[0].start < verbose.segments[-1].end
    assert verbose.words and any("beach" in w.word.lower() for w in verbose.words)
    starts = [w.start for w in verbose.words]
    assert starts == sorted(starts) and verbose.words[-1].end <= verbose.duration
    with pytest.warns(DeprecationWarning):  # the SDK marks translations deprecated
        translated = client.audio.translations.create(
            model="whisper-1", file=("de.wav", espeak(GERMAN, "de"))
        )
    assert "coffee" in translated.text.lower()


def test_an_unreachable_first_upstream_is_passed_over(
    upstream: LiveServer, closed_url: str, espeak: Any
) -> None:
    pool = UpstreamPool([closed_url, upstream.base_url], part="recogniser")  # not checked first
    recogniser = RemoteRecogniser(pool, "whisper-1", language="en")
    try:
        samples = decode_audio(espeak(QUESTION), sample_rate=INPUT_SAMPLE_RATE)
        assert "beach" in recogniser.transcribe(samples).lower()
        assert [u["healthy"] for u in pool.status()] == [False, True]
    finally:
        recogniser.close()


def test_the_clips_of_one_request_are_heard_at_once(upstream: LiveServer, espeak: Any) -> None:
    recogniser = RemoteRecogniser(UpstreamPool([upstream.base_url], part="recogniser"), "whisper-1")
    seen: set[str] = set()
    send = recogniser._text

    def spy(samples: np.ndarray) -> str:
        seen.add(threading.current_thread().name)
        return send(samples)

    recogniser._text = spy  # type: ignore[method-assign]
    try:
        clips = [
            [decode_audio(espeak(text), sample_rate=INPUT_SAMPLE_RATE)]
            for text in ("The cat sleeps.", "The dog barks loudly.")
        ]
        texts = recogniser.transcribe_clips([clips[0], [], clips[1]])
    finally:
        recogniser.close()
    assert "cat" in texts[0].lower() and texts[1] == "" and "dog" in texts[2].lower()
    assert len(seen) == 2  # one request each, in two threads


@pytest.fixture(scope="module")
def orphan(closed_url: str, models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A front whose recogniser, chat model and voice are all on a server that is down."""
    settings = Settings(
        asr=closed_url, llm=closed_url, llm_model="smollm2", tts=closed_url, cache_dir=models_dir
    )
    live = start_server(CascadeEngine(settings), tmp_path_factory.mktemp("orphan"))
    yield live
    live.stop()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "server_error" and error["code"] == "upstream_unavailable"
    assert set(error) == {"message", "type", "param", "code"}
    assert "unavailable" in error["message"] and "Try again later" in error["message"]


def test_a_front_whose_upstreams_are_down_starts_and_answers_503(
    orphan: LiveServer, espeak: Any
) -> None:
    assert httpx.get(orphan.root + "/health").status_code == 200
    wav = espeak(QUESTION)
    with httpx.Client(base_url=orphan.base_url, timeout=30) as http:
        transcription = http.post(
            "/audio/transcriptions", data={"model": "whisper-1"}, files={"file": ("q.wav", wav)}
        )
        assert_unavailable(transcription)
        heard = http.post(
            "/chat/completions",
            json={"model": MODEL, "messages": [audio_message(wav, "wav")]},
        )
        assert_unavailable(heard)
        spoken = http.post(
            "/chat/completions",
            json={
                "model": MODEL,
                "modalities": ["text", "audio"],
                "audio": {"voice": "alloy", "format": "wav"},
                "messages": [{"role": "user", "content": "Hello."}],
            },
        )
        assert_unavailable(spoken)


def test_a_verbose_answer_becomes_the_engines_events() -> None:
    answer = {
        "language": "German",
        "text": "Guten Morgen. Wie geht es?",
        "segments": [
            {
                "id": 0,
                "seek": 0,
                "start": 0.0,
                "end": 1.2,
                "text": " Guten Morgen.",
                "tokens": [1, 2],
            },
            {"id": 1, "seek": 0, "start": 1.4, "end": 2.5, "text": " Wie geht es?", "tokens": [3]},
            {"id": 2, "start": 2.5, "end": 2.6, "text": " "},
        ],
        "words": [
            {"word": "Guten", "start": 0.0, "end": 0.5},
            {"word": "Morgen.", "start": 0.6, "end": 1.2},
            {"word": "Wie", "start": 1.4, "end": 1.7, "probability": 0.5},
            {"word": "geht", "start": 1.8, "end": 2.1},
            {"word": "es?", "start": 2.2, "end": 9.0},
        ],
    }
    events = verbose_events(answer, duration_s=3.0, prompt="Ein Gruss")
    started, first, second, finished = events
    assert started == TranscriptionStarted("de", 3.0)
    assert isinstance(first, TranscriptSegment) and isinstance(second, TranscriptSegment)
    assert [w.word for w in first.words] == [" Guten", " Morgen."]
    assert [w.word for w in second.words] == [" Wie", " geht", " es?"]
    assert second.words[0].probability == 0.5 and second.words[-1].end_s == 3.0
    assert (first.index, second.index, second.text) == (0, 1, "Wie geht es?")
    assert finished == TranscriptionFinished(prompt_text_tokens=3, output_text_tokens=3)
    # text only: one segment of the whole clip, tokens estimated; the language asked for
    plain = verbose_events({"text": " Hello there."}, duration_s=2.0, language="en")
    assert plain[0] == TranscriptionStarted("en", 2.0)
    assert isinstance(plain[1], TranscriptSegment) and plain[1].end_s == 2.0
    assert plain[2] == TranscriptionFinished(prompt_text_tokens=0, output_text_tokens=3)
