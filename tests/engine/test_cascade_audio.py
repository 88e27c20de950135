"""The cascade engine reading text aloud and writing down recordings, with its real
models on the CPU: audio streamed a window at a time and as fast as asked, clips of
a sentence or a minute transcribed with every sentence once, German translated into
English, silence left empty, and the work stopped when the caller goes away."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import numpy as np
import pytest

from devtools.wer import words
from omnivox.audio import INPUT_SAMPLE_RATE, OUTPUT_BYTES_PER_S, decode_audio
from omnivox.engines.base import (
    AudioClip,
    SpeakingEngine,
    SpeechRequest,
    TranscribingEngine,
    TranscriptionRequest,
)
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.engines.cascade.listening.recogniser import SHORT_WINDOWS_S
from omnivox.engines.cascade.speaking.segmenter import SpeechSegmenter
from omnivox.engines.cascade.speaking.speaker import PIECE_S, UnitSpeaker
from omnivox.engines.events import (
    AudioDelta,
    SpeechFinished,
    TranscriptionFinished,
    TranscriptionStarted,
    TranscriptSegment,
)
from omnivox.errors import InvalidValueError

pytestmark = [pytest.mark.engine, pytest.mark.asyncio(loop_scope="session")]

Spoken = Callable[[str], AudioClip]

READING = (
    "The lighthouse keeper climbed the stairs at dusk. He lit the lamp, wiped the "
    "glass, and watched the ships sail past the rocks until the morning came."
)
SHORT = "Please bring a warm blanket to the picnic."
# Eight sentences, each with a word heard reliably and said in no other sentence.
MINUTE = (
    ("The quick brown fox jumps over the lazy dog near the river bank.", "fox"),
    ("My favourite colour is purple, and I paint my kitchen every spring.", "purple"),
    ("Elephants remember the way to water across the dry savanna.", "savann"),
    ("The train to Chicago leaves the station at seven in the morning.", "chicago"),
    ("Please bring a blanket and some oranges to the picnic tomorrow.", "blanket"),
    ("Astronomers discovered a new comet moving toward Jupiter last week.", "jupiter"),
    ("Our village library opens a chess club for children on Saturdays.", "chess"),
    ("The baker sells warm bread, butter cookies and cinnamon rolls.", "cinnamon"),
)
PAUSE_S = 2.5
GERMAN = "Guten Morgen. Ich trinke jeden Tag Kaffee mit Milch."


async def collect(events: AsyncIterator[Any]) -> list[Any]:
    return [event async for event in events]


def pcm_of(events: Sequence[Any]) -> bytes:
    return b"".join(e.pcm_s16le for e in events if isinstance(e, AudioDelta))


def segments_of(events: Sequence[Any]) -> list[TranscriptSegment]:
    return [e for e in events if isinstance(e, TranscriptSegment)]


def text_of(events: Sequence[Any]) -> str:
    return " ".join(s.text for s in segments_of(events))


def cascade_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("omnivox-cascade")]


async def threads_end() -> bool:
    waited_from = time.perf_counter()
    while cascade_threads() and time.perf_counter() - waited_from < 10:
        await asyncio.sleep(0.01)
    return not cascade_threads()


def transcription(clip: AudioClip, **options: Any) -> TranscriptionRequest:
    return TranscriptionRequest(clip=clip, **options)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(round(seconds * INPUT_SAMPLE_RATE), dtype=np.float32)


@pytest.fixture(scope="module")
def minute(spoken: Spoken) -> AudioClip:
    """The eight sentences, a pause after each: about a minute."""
    parts = [piece for text, _ in MINUTE for piece in (spoken(text).samples, silence(PAUSE_S))]
    samples = np.concatenate(parts)
    return AudioClip(samples, INPUT_SAMPLE_RATE, hashlib.sha256(samples.tobytes()).hexdigest())


@pytest.fixture(scope="module")
def german(tmp_path_factory: pytest.TempPathFactory) -> AudioClip:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    wav_path = tmp_path_factory.mktemp("german") / "german.wav"
    subprocess.run(["espeak-ng", "-v", "de", "-s", "120", "-w", str(wav_path), GERMAN], check=True)
    data = wav_path.read_bytes()
    samples = decode_audio(data, sample_rate=INPUT_SAMPLE_RATE)
    return AudioClip(samples, INPUT_SAMPLE_RATE, hashlib.sha256(data).hexdigest())


async def test_the_engine_offers_both_audio_endpoints(cascade: CascadeEngine) -> None:
    assert {"text_to_speech", "transcription"} <= cascade.capabilities
    assert isinstance(cascade, SpeakingEngine)
    assert isinstance(cascade, TranscribingEngine)
    assert cascade.translates


# -- reading aloud -------------------------------------------------------------------


async def test_speak_streams_audio_a_window_at_a_time(cascade: CascadeEngine) -> None:
    events = await collect(cascade.speak(SpeechRequest(READING, "alloy")))
    *deltas, finished = events
    assert all(isinstance(e, AudioDelta) for e in deltas)
    assert finished == SpeechFinished(cascade.generator.count_tokens(READING))
    assert finished.input_text_tokens > 20
    pcm = pcm_of(deltas)
    assert all(len(d.pcm_s16le) % 2 == 0 for d in deltas)
    # Pieces of at most PIECE_S leave as each window is made: the first is a sliver.
    assert len(deltas) > 20
    assert max(len(d.pcm_s16le) for d in deltas) <= PIECE_S * OUTPUT_BYTES_PER_S + 2
    assert len(deltas[0].pcm_s16le) < len(pcm) / 20
    seconds = len(pcm) / OUTPUT_BYTES_PER_S
    assert 1.0 < len(words(READING)) / seconds < 5.0  # plausible words per second
    samples = np.frombuffer(pcm, dtype="<i2")
    assert np.abs(samples).max() > 3000  # speech, not silence


async def test_speak_at_speed_one_sounds_as_a_spoken_answer_does(cascade: CascadeEngine) -> None:
    pcm = pcm_of(await collect(cascade.speak(SpeechRequest(SHORT, "nova"))))
    speaker = UnitSpeaker(cascade.synthesizer, "nova")
    segmenter = SpeechSegmenter()
    units = [*segmenter.feed(SHORT), *segmenter.flush()]
    expected = b"".join(p for unit in units for p in speaker.speak(unit, threading.Event()))
    assert pcm == expected + speaker.flush()


async def test_speed_changes_the_speaking_rate(cascade: CascadeEngine) -> None:
    slow = pcm_of(await collect(cascade.speak(SpeechRequest(SHORT, "alloy", speed=0.5))))
    fast = pcm_of(await collect(cascade.speak(SpeechRequest(SHORT, "alloy", speed=2.0))))
    assert 2.5 < len(slow) / len(fast) < 6.0


async def test_closing_a_reading_stops_it(cascade: CascadeEngine) -> None:
    stream = cascade.speak(SpeechRequest(READING * 4, "alloy"))
    first = await anext(stream)
    assert isinstance(first, AudioDelta)
    await stream.aclose()  # type: ignore[attr-defined]
    assert await threads_end()
    again = await collect(cascade.speak(SpeechRequest("Still here.", "alloy")))
    assert isinstance(again[-1], SpeechFinished)  # the slot was given back


# -- transcription -------------------------------------------------------------------


async def test_a_spoken_sentence_is_written_down_with_its_times(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    clip = spoken(SHORT)
    events = await collect(cascade.transcribe(transcription(clip, word_timestamps=True)))
    started, *middle, finished = events
    assert started == TranscriptionStarted(language="en", duration_s=clip.duration_s)
    segments = segments_of(middle)
    assert segments == middle and segments
    assert [s.index for s in segments] == list(range(len(segments)))
    heard = words(text_of(segments))
    assert {"blanket", "picnic"} <= set(heard)
    assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)
    for segment in segments:
        assert 0.0 <= segment.start_s <= segment.end_s <= clip.duration_s
        assert segment.text == segment.text.strip()
        assert segment.words and segment.tokens
        assert -5.0 < segment.avg_logprob <= 0.0
        assert 0.0 <= segment.no_speech_prob <= 1.0
        for word in segment.words:
            assert segment.start_s - 0.05 <= word.start_s <= word.end_s <= segment.end_s + 0.05
            assert 0.0 <= word.probability <= 1.0
    times = [w.start_s for s in segments for w in s.words]
    assert times == sorted(times)
    assert isinstance(finished, TranscriptionFinished)
    assert finished.prompt_text_tokens == 0
    assert 0 < finished.output_text_tokens <= sum(len(s.tokens) for s in segments)


async def test_a_prompt_is_counted(cascade: CascadeEngine, spoken: Spoken) -> None:
    request = transcription(spoken(SHORT), language="en", prompt="A picnic in the park.")
    events = await collect(cascade.transcribe(request))
    assert "picnic" in words(text_of(events))
    finished = events[-1]
    assert isinstance(finished, TranscriptionFinished)
    assert 3 <= finished.prompt_text_tokens <= 10


async def test_only_a_conversations_turns_are_encoded_in_the_short_window(
    cascade: CascadeEngine, spoken: Spoken, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short turn is heard in a 10 s window (0.4 s sooner); a transcription, where every
    # word counts more, in Whisper's own 30 s, short clip or not.
    from faster_whisper import WhisperModel

    frames: list[int] = []
    encode = WhisperModel.encode

    def counted(model: Any, features: np.ndarray) -> Any:
        frames.append(features.shape[-1])
        return encode(model, features)

    monkeypatch.setattr(WhisperModel, "encode", counted)
    clip = spoken("Short windows for turns, whole ones for transcriptions.")
    assert "windows" in words(cascade.transcripts.transcript(clip))
    assert frames == [min(SHORT_WINDOWS_S) * 100]
    frames.clear()
    events = await collect(cascade.transcribe(transcription(clip, language="en")))
    assert "windows" in words(text_of(events))
    assert frames == [3000]


async def test_a_minute_is_heard_in_pieces_with_every_sentence_once(
    cascade: CascadeEngine, minute: AudioClip
) -> None:
    events = await collect(cascade.transcribe(transcription(minute)))
    assert events[0] == TranscriptionStarted(language="en", duration_s=minute.duration_s)
    segments = segments_of(events)
    assert len({s.seek for s in segments}) >= 2  # more than one pass
    text = " ".join(words(text_of(segments)))
    for _, key in MINUTE:
        assert text.count(key) == 1, (key, text)
    # Each sentence's word lies in a segment that starts after the one before's.
    starts = [next(s.start_s for s in segments if key in s.text.lower()) for _, key in MINUTE]
    assert starts == sorted(starts)
    assert [s.start_s for s in segments] == sorted(s.start_s for s in segments)
    assert segments[-1].end_s <= minute.duration_s


async def test_german_speech_is_translated_into_english(
    cascade: CascadeEngine, german: AudioClip
) -> None:
    events = await collect(cascade.transcribe(transcription(german, task="translate")))
    assert isinstance(events[0], TranscriptionStarted)
    assert events[0].language == "de"
    assert {"coffee", "morning"} <= set(words(text_of(events)))


async def test_silence_has_no_segments(cascade: CascadeEngine) -> None:
    samples = silence(5.0)
    clip = AudioClip(samples, INPUT_SAMPLE_RATE, "silence")
    events = await collect(cascade.transcribe(transcription(clip)))
    assert events == [
        TranscriptionStarted(language="en", duration_s=5.0),
        TranscriptionFinished(prompt_text_tokens=0, output_text_tokens=0),
    ]


async def test_an_unknown_language_is_refused(cascade: CascadeEngine) -> None:
    clip = AudioClip(silence(1.0), INPUT_SAMPLE_RATE, "short silence")
    with pytest.raises(InvalidValueError) as caught:
        await collect(cascade.transcribe(transcription(clip, language="yue")))
    assert caught.value.param == "language"


async def test_closing_a_transcription_stops_it(cascade: CascadeEngine, minute: AudioClip) -> None:
    stream = cascade.transcribe(transcription(minute, language="en"))
    assert isinstance(await anext(stream), TranscriptionStarted)
    assert isinstance(await anext(stream), TranscriptSegment)
    await stream.aclose()  # type: ignore[attr-defined]
    assert await threads_end()
    again = await collect(cascade.speak(SpeechRequest("Still here.", "alloy")))
    assert isinstance(again[-1], SpeechFinished)  # the slot was given back
