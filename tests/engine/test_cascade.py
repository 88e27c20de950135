"""The cascade engine with its real default models on the CPU, driven through the
Engine Protocol: it hears a spoken question, answers in text and speech, streams
speech while it is still writing, and stops its work when the client goes away."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devtools.wer import word_error_rate
from omnivox.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import resample, s16le_to_float
from omnivox.engines.base import (
    AudioClip,
    Engine,
    GenerationRequest,
    SamplingParams,
    SpeechOutput,
    Turn,
)
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.engines.cascade.speaking.speaker import UnitSpeaker
from omnivox.engines.events import AudioDelta, EngineEvent, Finished, TextDelta
from omnivox.errors import ContextLengthExceededError, ModelUnavailableError
from omnivox.settings import Settings

pytestmark = [pytest.mark.engine, pytest.mark.asyncio(loop_scope="session")]

Spoken = Callable[[str], AudioClip]
GREEDY = SamplingParams(temperature=0.0, max_output_tokens=160)
FRANCE = "What is the capital of France?"
CATS = "Please say three short sentences about cats."


@dataclass
class Run:
    """One generation's events, each with its time since ``generate`` began."""

    events: list[tuple[float, EngineEvent]] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(e.text for _, e in self.events if isinstance(e, TextDelta))

    @property
    def pcm(self) -> bytes:
        return b"".join(e.pcm_s16le for _, e in self.events if isinstance(e, AudioDelta))

    @property
    def finished(self) -> list[Finished]:
        return [e for _, e in self.events if isinstance(e, Finished)]

    def first_time(self, kind: type) -> float:
        return min(t for t, e in self.events if isinstance(e, kind))

    def last_time(self, kind: type) -> float:
        return max(t for t, e in self.events if isinstance(e, kind))


def ask(
    clip: AudioClip, *, voice: str | None = "alloy", sampling: SamplingParams = GREEDY
) -> GenerationRequest:
    speech = SpeechOutput(voice) if voice else None
    return GenerationRequest(turns=(Turn("user", (clip,)),), sampling=sampling, speech=speech)


async def run(engine: Engine, request: GenerationRequest) -> Run:
    prepared = await engine.prepare(request)
    result = Run()
    start = time.perf_counter()
    async for event in engine.generate(prepared):
        result.events.append((time.perf_counter() - start, event))
    return result


def cascade_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("omnivox-cascade")]


@pytest.fixture(scope="module")
async def france(cascade: CascadeEngine, spoken: Spoken) -> Run:
    return await run(cascade, ask(spoken(FRANCE)))


@pytest.fixture(scope="module")
async def cats(cascade: CascadeEngine, spoken: Spoken) -> Run:
    return await run(cascade, ask(spoken(CATS)))


async def test_the_engine_implements_the_protocol(cascade: CascadeEngine) -> None:
    assert isinstance(cascade, Engine)
    assert cascade.context_window_tokens == 4096
    assert len(cascade.voice_table()) == 13


async def test_a_spoken_question_gets_a_spoken_answer_naming_paris(france: Run) -> None:
    assert "Paris" in france.text
    assert len(france.pcm) > OUTPUT_SAMPLE_RATE  # more than half a second of speech
    assert all(len(e.pcm_s16le) % 2 == 0 for _, e in france.events if isinstance(e, AudioDelta))
    assert france.finished == [france.events[-1][1]]
    assert france.finished[0].reason == "stop"
    assert france.finished[0].completion_text_tokens > 0


async def test_the_reply_audio_says_the_reply_transcript(cascade: CascadeEngine, cats: Run) -> None:
    samples = resample(s16le_to_float(cats.pcm), OUTPUT_SAMPLE_RATE, INPUT_SAMPLE_RATE)
    heard = await asyncio.to_thread(cascade.transcripts.recogniser.transcribe, samples)
    assert word_error_rate(cats.text, heard) <= 0.25, (cats.text, heard)


async def test_speech_starts_before_the_answer_is_written(cats: Run) -> None:
    assert cats.text.count(".") >= 2, cats.text  # a multi-sentence answer
    assert cats.first_time(AudioDelta) < cats.last_time(TextDelta)


async def test_prompt_tokens_bill_the_audio_transcript_apart(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    clip = spoken(FRANCE)
    heard = await cascade.prepare(ask(clip))
    transcript = cascade.transcripts.cached(clip)
    assert transcript
    audio_tokens = cascade.generator.count_tokens(transcript)
    assert heard.prompt_text_tokens == heard.context_tokens - audio_tokens
    typed = await cascade.prepare(GenerationRequest(turns=(Turn("user", (transcript,)),)))
    assert typed.prompt_text_tokens == typed.context_tokens == heard.context_tokens


async def test_history_audio_is_transcribed_once(
    cascade: CascadeEngine, spoken: Spoken, monkeypatch: pytest.MonkeyPatch
) -> None:
    recogniser = cascade.listener.recogniser
    calls: list[int] = []
    transcribe_clips = recogniser.transcribe_clips

    def counting(clips: Any) -> list[str]:
        calls.append(len(clips))
        return transcribe_clips(clips)

    monkeypatch.setattr(recogniser, "transcribe_clips", counting)
    request = ask(spoken("How many legs does a spider have?"))
    first = await cascade.prepare(request)
    second = await cascade.prepare(request)
    assert len(calls) == 1
    assert first.payload == second.payload


async def test_questions_asked_at_once_are_heard_in_shared_passes(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    questions = {
        "What is the capital of Spain?": "spain",
        "Name the colors of the rainbow.": "rainbow",
        "Tell me three facts about the moon.": "moon",
        "Why is the sky blue?": "sky",
    }
    clips = [spoken(q) for q in questions]
    listener = cascade.listener
    passes, heard = listener.passes, listener.clips_heard
    await asyncio.gather(*(cascade.prepare(ask(clip)) for clip in clips))
    assert listener.clips_heard - heard == len(clips)
    assert listener.passes - passes < len(clips)  # some passes heard several questions
    for clip, word in zip(clips, questions.values(), strict=True):
        assert word in cascade.transcripts.transcript(clip).lower()  # each its own words


async def test_two_concurrent_generations_both_succeed(
    cascade: CascadeEngine, spoken: Spoken, france: Run
) -> None:
    runs = await asyncio.gather(
        run(cascade, ask(spoken(FRANCE))), run(cascade, ask(spoken(FRANCE)))
    )
    for result in runs:
        assert result.finished and result.finished[0].reason == "stop"
        assert result.text == france.text  # greedy: each has its own model state
        assert len(result.pcm) > 0


async def test_the_chat_contexts_share_one_loaded_model(cascade: CascadeEngine) -> None:
    import ctypes

    def address(pointer: object) -> int | None:
        return ctypes.cast(pointer, ctypes.c_void_p).value

    instances = cascade.generator._instances
    assert len(instances) > 1
    assert len({address(llm.model) for llm in instances}) == 1
    assert len({address(llm.ctx) for llm in instances}) == len(instances)


async def test_every_evaluation_runs_on_the_chat_models_one_thread(
    cascade: CascadeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever thread serves a request, llama.cpp computes on one thread (a second
    thread starting OpenMP work makes every token ~2-3 x slower on a small machine)."""
    import llama_cpp

    evaluated_on: list[threading.Thread] = []
    evaluate = llama_cpp.Llama.eval

    def recorded(llm: Any, tokens: Any) -> None:
        evaluated_on.append(threading.current_thread())
        evaluate(llm, tokens)

    monkeypatch.setattr(llama_cpp.Llama, "eval", recorded)
    request = GenerationRequest(
        turns=(Turn("user", ("Name three colours.",)),),
        sampling=SamplingParams(temperature=0.0, max_output_tokens=6),
    )
    results = await asyncio.gather(run(cascade, request), run(cascade, request))
    assert results[0].text == results[1].text != ""
    assert len(evaluated_on) >= 12  # a prompt and the tokens of each answer
    assert len(set(evaluated_on)) == 1
    assert evaluated_on[0].name.startswith("omnivox-llama")


async def test_text_only_answers_carry_logprobs_and_no_audio(cascade: CascadeEngine) -> None:
    sampling = SamplingParams(temperature=0.0, max_output_tokens=8, logprobs=True, top_logprobs=3)
    request = GenerationRequest(
        turns=(Turn("user", ("Count from one to twenty.",)),), sampling=sampling
    )
    result = await run(cascade, request)
    assert not any(isinstance(e, AudioDelta) for _, e in result.events)
    assert result.finished[0].reason == "length"
    assert result.finished[0].completion_text_tokens == 8
    logprobs = [lp for _, e in result.events if isinstance(e, TextDelta) for lp in e.logprobs]
    assert len(logprobs) == 8
    assert all(lp.logprob <= 0 and len(lp.top) == 3 for lp in logprobs)
    assert all(lp.top[0][1] >= lp.logprob for lp in logprobs)  # greedy picks the best
    assert "".join(lp.token for lp in logprobs) == result.text


async def test_closing_the_stream_stops_the_model_work_quickly(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    sampling = SamplingParams(temperature=0.0, max_output_tokens=2000)
    prepared = await cascade.prepare(
        ask(spoken("Tell me a very long story about a dragon."), sampling=sampling)
    )
    stream = cascade.generate(prepared)
    n_text = 0
    async for event in stream:
        n_text += isinstance(event, TextDelta)
        if n_text == 20:
            break
    assert cascade_threads(), "the model work runs in named threads"
    closed_at = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    while cascade_threads() and time.perf_counter() - closed_at < 5:
        await asyncio.sleep(0.01)
    assert not cascade_threads()
    assert time.perf_counter() - closed_at < 1.0


async def test_a_cancelled_task_stops_the_model_work(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    sampling = SamplingParams(temperature=0.0, max_output_tokens=2000)
    prepared = await cascade.prepare(
        ask(spoken("Tell me a very long story about a dragon."), sampling=sampling)
    )
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in cascade.generate(prepared):
            if isinstance(event, TextDelta):
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    cancelled_at = time.perf_counter()
    while cascade_threads() and time.perf_counter() - cancelled_at < 5:
        await asyncio.sleep(0.01)
    assert not cascade_threads()
    assert time.perf_counter() - cancelled_at < 1.0
    # the model went back to the pool: the next generation runs
    after = await run(cascade, GenerationRequest(turns=(Turn("user", ("Hi",)),), sampling=GREEDY))
    assert after.finished


async def test_voices_differ_in_speed(cascade: CascadeEngine) -> None:
    def duration_s(voice: str) -> float:
        speaker = UnitSpeaker(cascade.synthesizer, voice)
        pcm = b"".join(
            speaker.speak("The quick brown fox jumps over the lazy dog.", threading.Event())
        )
        return (len(pcm) + len(speaker.flush())) / 2 / OUTPUT_SAMPLE_RATE

    verse, alloy, sage = [
        await asyncio.to_thread(duration_s, v) for v in ("verse", "alloy", "sage")
    ]
    assert verse < alloy < sage


async def test_a_missing_chat_model_fails_at_start_with_a_clear_message(models_dir: Path) -> None:
    engine = CascadeEngine(Settings(cache_dir=models_dir, llm="/nonexistent/model.gguf"))
    with pytest.raises(ModelUnavailableError, match=r"/nonexistent/model\.gguf.*--llm"):
        await engine.start()


async def test_an_offline_hub_model_fails_at_start_with_a_clear_message(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    engine = CascadeEngine(Settings(cache_dir=models_dir, asr="Systran/faster-whisper-tiny"))
    with pytest.raises(ModelUnavailableError, match=r"faster-whisper-tiny.*HF_HUB_OFFLINE.*--asr"):
        await engine.start()


async def test_a_hard_clip_is_heard_without_a_repetition_loop(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    # Greedy Whisper base loops on this one ("I will not worry, I will not worry, ...")
    # and its default sampled retries took seconds; the small beam hears the question.
    text = cascade.transcripts.transcript(spoken("What should I pack for a day at the beach?"))
    words = text.lower().replace(",", "").split()
    assert "beach" in text.lower()
    assert len(words) <= 16, text
    assert max(words.count(w) for w in set(words)) <= 2, text


async def test_speech_longer_than_the_short_window_is_heard_to_its_last_words(
    cascade: CascadeEngine, spoken: Spoken
) -> None:
    # Speech that does not end well before 20 s is encoded in Whisper's whole 30 s
    # window: nothing past the short window may be lost.
    text = (
        "The train leaves the station at seven in the morning. "
        "Please bring an umbrella because it may rain later. "
        "My sister plays the piano every Sunday afternoon. "
        "The library is closed on public holidays. "
        "We planted tomatoes and beans in the garden. "
        "The meeting has been moved to Thursday. "
        "Finally, the purple elephant danced."
    )
    clip = spoken(text)
    assert 20.0 < len(clip.samples) / clip.sample_rate < 28.0
    heard = cascade.transcripts.transcript(clip).lower()
    assert "elephant" in heard, heard
    assert "train" in heard, heard


async def test_an_answer_hands_back_its_freed_memory(
    cascade: CascadeEngine, spoken: Spoken, monkeypatch: pytest.MonkeyPatch
) -> None:
    released_s: list[float] = []
    for name in ("release_free_memory", "release_free_memory_soon"):
        monkeypatch.setattr(
            f"omnivox.engines.cascade.engine.{name}",
            lambda: released_s.append(time.perf_counter()),
        )
    heard = spoken(CATS)
    # the same words with a few samples of silence more: a clip no earlier test transcribed
    clip = AudioClip(
        np.concatenate([heard.samples, np.zeros(160, np.float32)]),
        heard.sample_rate,
        heard.sha256 + "-padded",
    )
    assert cascade.transcripts.cached(clip) is None
    prepared = await cascade.prepare(ask(clip))
    audio_s = []
    async for event in cascade.generate(prepared):
        if isinstance(event, AudioDelta):
            audio_s.append(time.perf_counter())
    # after the recognition pass, then after every spoken unit (several sentences)
    assert audio_s and len(released_s) >= 3
    assert min(released_s) < min(audio_s) and max(released_s) > max(audio_s) - 1.0


LONG_SENTENCE = (
    "Mars is the fourth planet from the sun, and people want to go there because it is "
    "the most Earth-like planet nearby, with water ice and a day of about twenty four hours."
)


def _whole_voice(cascade: CascadeEngine) -> Any:
    """The default voice as one graph (noise seeded as the engine seeds it), run whole."""
    import onnxruntime

    from omnivox.engines.cascade.speaking.onnx_subset import onnx_classes
    from omnivox.engines.cascade.speaking.piper_noise import SeededSession, make_noise_reproducible

    model = onnx_classes()["ModelProto"]()
    model.ParseFromString(cascade.synthesizer.files.model_path.read_bytes())
    assert make_noise_reproducible(model)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return SeededSession(session)


async def test_a_long_sentence_is_spoken_in_windows_with_the_samples_of_one_run(
    cascade: CascadeEngine,
) -> None:
    from omnivox.engines.cascade.speaking.piper_vocoder import FIRST_WINDOW_FRAMES
    from omnivox.engines.cascade.speaking.synthesizer import voice_settings

    synthesizer = cascade.synthesizer
    voice = synthesizer._voice
    (phonemes,) = voice.phonemize(LONG_SENTENCE)
    feeds = synthesizer._feeds(voice.phonemes_to_ids(phonemes), voice_settings("onyx"))
    runner = synthesizer._runner
    pieces = list(runner.audio(feeds))
    assert len(pieces) >= 4
    assert len(pieces[0]) == FIRST_WINDOW_FRAMES * runner.hop_samples
    whole = _whole_voice(cascade).run(None, feeds)[0].reshape(-1)
    windowed = np.concatenate(pieces)
    assert len(windowed) == len(whole)
    assert float(np.abs(windowed - whole).max()) < 1e-4


def _peak_rss_mb_of(work: Callable[[], object]) -> float:
    """The process's resident high-water mark during ``work``, above where it began."""
    from omnivox.heap import release_free_memory

    def status_mb(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
        raise AssertionError(key)

    release_free_memory()
    before = status_mb("VmRSS:")
    Path("/proc/self/clear_refs").write_text("5")  # resets the high-water mark
    work()
    return status_mb("VmHWM:") - before


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux /proc needed")
async def test_a_long_sentence_needs_no_more_memory_than_a_window(
    cascade: CascadeEngine,
) -> None:
    synthesizer = cascade.synthesizer
    voice = synthesizer._voice
    (phonemes,) = voice.phonemize(LONG_SENTENCE.replace(".", ",") + " " + LONG_SENTENCE)
    from omnivox.engines.cascade.speaking.synthesizer import voice_settings

    feeds = synthesizer._feeds(voice.phonemes_to_ids(phonemes), voice_settings("alloy"))
    whole = _whole_voice(cascade)
    whole_mb = _peak_rss_mb_of(lambda: whole.run(None, feeds))
    windowed_mb = _peak_rss_mb_of(lambda: list(synthesizer._runner.audio(feeds)))
    # ~20 s of speech: run whole its vocoder peaks at a few hundred MB
    assert windowed_mb < 0.5 * whole_mb, (windowed_mb, whole_mb)


async def test_a_huge_prompt_is_templated_and_tokenized_off_the_event_loop(
    cascade: CascadeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prompt of megabytes takes seconds to tokenize: never on the thread serving others."""
    loop_thread = threading.current_thread()
    seen: list[threading.Thread] = []
    generator = cascade.generator
    tokenize = generator.tokenize_prompt

    def recording_tokenize(text: str) -> Any:
        seen.append(threading.current_thread())
        return tokenize(text)

    monkeypatch.setattr(generator, "tokenize_prompt", recording_tokenize)
    huge = GenerationRequest(turns=(Turn("user", ("word " * 200_000,)),))
    with pytest.raises(ContextLengthExceededError):
        await cascade.prepare(huge)
    assert seen and all(thread is not loop_thread for thread in seen)
