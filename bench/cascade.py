"""The embedded cascade, measured: components, the naive pipeline, and streaming first audio.

Twelve spoken questions (2 to 8 s, said by espeak-ng, a voice other than the
server's) are put to the default cascade at temperature 0, three ways:

1. components, timed directly in this process on the same models: recogniser
   time and real-time factor, chat tokens/s and time to the first speakable
   unit, synthesis time of the first unit and real-time factor of the reply;
   from these, the *component floor* (recogniser + chat to the first unit +
   synthesis of the first unit) and the *naive pipeline's* time to audio
   (recognise, write the whole reply, synthesize it all, in sequence). The
   voice speaks a unit a window at a time, so its first sound comes before the
   unit is whole: the *sound floor* (recogniser + chat to the first unit + the
   first unit's first window) is the lower bound the stream can reach;
2. ``omnivox serve`` (a subprocess), one conversation: time to the first audio
   byte of a pcm16 stream as the SDK sees it, and total time. Each question is
   streamed right after its components are timed, so a question's first audio
   and its floor are measured seconds apart, not minutes: on a shared machine
   the speed of the cores drifts, and the ratio should not measure the drift.
   Every question is asked twice this way (two rounds, 24 pairs); the medians
   and percentiles of the single-conversation rows are over all 24;
3. the same server with 4 conversations at once, two ways:
   - *turn-taking* (the goal's measure): each conversation begins at a random
     moment of the first 8 s (seeded), and like a person it listens to the
     whole answer (first audio + the answer's audio length + any gaps) and
     takes the length of its next question to say it before the next request
     is sent;
   - *back to back* (a saturation test): each conversation sends its next
     question the moment the previous answer's stream ends, all four starting
     together, so the two cores never rest.
   Each conversation's client runs in its own process.

Every stream is also played back as a listener would hear it, from its first
audio byte at the audio's real rate: the *gaps* are the time that listener
waits for audio not yet arrived. Under load, the sooner first audio of one
conversation must not be paid for with gaps in another's answer.

Peak RSS is the server process's high-water mark (VmHWM) after all runs.

    .venv/bin/python -m bench.cascade

Prints a table and writes bench/cascade.json.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import io
import json
import multiprocessing
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import openai

from bench.facts import run_facts
from devtools.serve import serve_process
from omnivox.audio import INPUT_SAMPLE_RATE, decode_audio
from omnivox.engines.base import (
    AudioClip,
    GenerationRequest,
    SamplingParams,
    SpeechOutput,
    Turn,
)
from omnivox.engines.cascade.chat.generator import TokenPiece
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.engines.cascade.speaking.segmenter import SpeechSegmenter
from omnivox.engines.cascade.speaking.speaker import UnitSpeaker
from omnivox.heap import tune_malloc
from omnivox.settings import Settings

QUESTIONS = (
    "What is the capital of France?",
    "Tell me three facts about the moon.",
    "Why is the sky blue? Explain it in three sentences.",
    "How do plants make their own food?",
    "What should I pack for a day at the beach?",
    "Describe a cat in three short sentences.",
    "How does a bicycle work?",
    "What are the benefits of drinking water every day?",
    "Give me three tips for sleeping better at night.",
    "What is the difference between weather and climate?",
    "Explain what a computer does, in simple words.",
    "Tell me a short story about a brave little mouse.",
)
VOICE = "alloy"
# Spoken answers are capped like a voice client would cap them; the same cap in every
# path keeps the answers identical across the three ways they are measured.
MAX_ANSWER_TOKENS = 200
CONCURRENCY = 4
SINGLE_ROUNDS = 2  # each question asked this many times alone (pairs: floor, then stream)
OUTPUT_BYTES_PER_S = 48_000
START_SPREAD_S = 8.0  # turn-taking conversations begin within this many seconds
AUDIBLE_STALL_S = 0.05  # gaps in an answer's playback adding up to less go unnoticed


@dataclass
class Components:
    question: str
    question_s: float
    asr_s: float
    asr_rtf: float
    transcript: str
    chat_first_unit_s: float
    chat_total_s: float
    chat_tokens: int
    chat_tokens_per_s: float
    reply: str
    sentences: int
    tts_first_unit_s: float
    tts_first_sound_s: float
    tts_total_s: float
    reply_audio_s: float
    tts_rtf: float
    floor_s: float
    sound_floor_s: float
    naive_time_to_audio_s: float


def espeak(text: str, folder: Path) -> bytes:
    path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:12]}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(path), text], check=True)
    return path.read_bytes()


def variant(wav: bytes, k: int) -> bytes:
    """``wav`` with ``k`` silent samples added: the same question, but a clip the server's
    transcript cache has not seen, so that every request really runs the recogniser."""
    with wave.open(io.BytesIO(wav)) as reader:
        params = reader.getparams()
        frames = reader.readframes(reader.getnframes())
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(frames + b"\x00" * (k * params.sampwidth * params.nchannels))
    return out.getvalue()


def measure_hearing(engine: CascadeEngine, wavs: list[bytes], rounds: int = 3) -> dict[str, Any]:
    """Four questions arriving at once: when is each heard (prepare done)? Through the
    engine, which hears waiting clips in shared passes, against the same recogniser
    hearing them one pass each, alternated over ``rounds`` rounds of fresh clips."""

    def clips(salt: int) -> list[AudioClip]:
        return [
            AudioClip(
                decode_audio(w, sample_rate=INPUT_SAMPLE_RATE), INPUT_SAMPLE_RATE, f"h{salt}-{i}"
            )
            for i, w in enumerate(wavs[:CONCURRENCY])
        ]

    async def together(batch: list[AudioClip]) -> list[float]:
        start = time.perf_counter()

        async def one(clip: AudioClip) -> float:
            await engine.prepare(GenerationRequest(turns=(Turn("user", (clip,)),)))
            return time.perf_counter() - start

        return list(await asyncio.gather(*(one(clip) for clip in batch)))

    def one_by_one(batch: list[AudioClip]) -> list[float]:
        start, done = time.perf_counter(), []
        for clip in batch:
            engine.transcripts.transcript(clip)
            done.append(time.perf_counter() - start)
        return done

    shared: list[float] = []
    alone: list[float] = []
    passes, heard = engine.listener.passes, engine.listener.clips_heard
    for r in range(rounds):
        shared += sorted(asyncio.run(together(clips(1000 + r))))
        alone += one_by_one(clips(2000 + r))
    return {
        "heard_together_last_s_p50": round(
            statistics.median(shared[CONCURRENCY - 1 :: CONCURRENCY]), 3
        ),
        "heard_together_mean_s": round(statistics.fmean(shared), 3),
        "one_pass_each_last_s_p50": round(
            statistics.median(alone[CONCURRENCY - 1 :: CONCURRENCY]), 3
        ),
        "one_pass_each_mean_s": round(statistics.fmean(alone), 3),
        "passes_per_4_questions": round((engine.listener.passes - passes) / rounds, 2),
        "clips_heard": engine.listener.clips_heard - heard,
    }


def count_sentences(text: str) -> int:
    return len([s for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s])


def measure_components(engine: CascadeEngine, question: str, wav: bytes, salt: int) -> Components:
    samples = decode_audio(wav, sample_rate=INPUT_SAMPLE_RATE)
    question_s = len(samples) / INPUT_SAMPLE_RATE
    # A fresh hash each run, so the recogniser really runs (no transcript cache hit).
    clip = AudioClip(samples, INPUT_SAMPLE_RATE, f"bench-{salt}")
    start = time.perf_counter()
    transcript = engine.transcripts.transcript(clip)
    asr_s = time.perf_counter() - start
    request = GenerationRequest(
        turns=(Turn("user", (clip,)),),
        sampling=SamplingParams(temperature=0.0, max_output_tokens=MAX_ANSWER_TOKENS),
        speech=SpeechOutput(VOICE),
    )
    prepared = asyncio.run(engine.prepare(request))
    cancel = threading.Event()
    segmenter = SpeechSegmenter()
    units: list[str] = []
    pieces: list[str] = []
    first_unit_s = None
    start = time.perf_counter()
    for item in engine.generator.stream(prepared.payload.prompt, request.sampling, cancel):
        if isinstance(item, TokenPiece):
            pieces.append(item.text)
            units += segmenter.feed(item.text)
            if units and first_unit_s is None:
                first_unit_s = time.perf_counter() - start
    chat_total_s = time.perf_counter() - start
    units += segmenter.flush()
    first_unit_s = chat_total_s if first_unit_s is None else first_unit_s
    n_tokens = len(pieces)
    speaker = UnitSpeaker(engine.synthesizer, VOICE)
    start = time.perf_counter()
    n_bytes = 0
    tts_first_sound_s = None
    for p in speaker.speak(units[0], cancel) if units else ():
        n_bytes += len(p)
        if tts_first_sound_s is None:
            tts_first_sound_s = time.perf_counter() - start
    tts_first_s = time.perf_counter() - start
    tts_first_sound_s = tts_first_s if tts_first_sound_s is None else tts_first_sound_s
    n_bytes += sum(len(p) for unit in units[1:] for p in speaker.speak(unit, cancel))
    n_bytes += len(speaker.flush())
    tts_total_s = time.perf_counter() - start
    reply_audio_s = n_bytes / OUTPUT_BYTES_PER_S
    reply = "".join(pieces)
    return Components(
        question=question,
        question_s=round(question_s, 2),
        asr_s=round(asr_s, 3),
        asr_rtf=round(asr_s / question_s, 3),
        transcript=transcript,
        chat_first_unit_s=round(first_unit_s, 3),
        chat_total_s=round(chat_total_s, 3),
        chat_tokens=n_tokens,
        chat_tokens_per_s=round(n_tokens / chat_total_s, 1),
        reply=reply,
        sentences=count_sentences(reply),
        tts_first_unit_s=round(tts_first_s, 3),
        tts_first_sound_s=round(tts_first_sound_s, 3),
        tts_total_s=round(tts_total_s, 3),
        reply_audio_s=round(reply_audio_s, 2),
        tts_rtf=round(tts_total_s / max(reply_audio_s, 1e-6), 3),
        floor_s=round(asr_s + first_unit_s + tts_first_s, 3),
        sound_floor_s=round(asr_s + first_unit_s + tts_first_sound_s, 3),
        naive_time_to_audio_s=round(asr_s + chat_total_s + tts_total_s, 3),
    )


def stream_once(client: openai.OpenAI, wav: bytes) -> dict[str, Any]:
    start = time.perf_counter()
    first_audio_s = None
    transcript = ""
    audio_bytes = 0
    playback = Playback()
    for chunk in client.chat.completions.create(
        model="gpt-4o-audio-preview",
        modalities=["text", "audio"],
        audio={"voice": VOICE, "format": "pcm16"},
        temperature=0,
        max_completion_tokens=MAX_ANSWER_TOKENS,
        stream=True,
        messages=[
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                    }
                ],
            }
        ],
    ):
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is not None and audio.data:
            now_s = time.perf_counter() - start
            if first_audio_s is None:
                first_audio_s = now_s
            playback.arrived(now_s, audio_bytes / OUTPUT_BYTES_PER_S)
            audio_bytes += base64_bytes(audio.data)
        if audio is not None and audio.transcript:
            transcript += audio.transcript
    return {
        "first_audio_s": round(first_audio_s or float("nan"), 3),
        "total_s": round(time.perf_counter() - start, 3),
        "answer_audio_s": round(audio_bytes / OUTPUT_BYTES_PER_S, 3),
        "stall_s": round(playback.stall_s, 3),
        "transcript": transcript,
    }


class Playback:
    """A listener who starts playing at the first audio byte and plays every byte in
    order at its real rate: ``stall_s`` is how long that listener sat waiting for audio
    that had not arrived (a gap in the answer's speech)."""

    def __init__(self) -> None:
        self.start_s: float | None = None
        self.stall_s = 0.0

    def arrived(self, at_s: float, audio_before_s: float) -> None:
        """A delta arrived ``at_s`` after the request, following ``audio_before_s`` of audio."""
        if self.start_s is None:
            self.start_s = at_s
        due_s = self.start_s + audio_before_s + self.stall_s  # when playback reaches it
        self.stall_s += max(0.0, at_s - due_s)


def base64_bytes(data: str) -> int:
    """How many bytes ``data`` decodes to, without decoding it."""
    return len(data) * 3 // 4 - data[-2:].count("=")


def wav_seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as reader:
        return reader.getnframes() / reader.getframerate()


def take_turns(base_url: str, wavs: list[bytes], start_delay_s: float) -> list[dict]:
    """A conversation as a person holds it: say the question, hear the whole answer."""
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    time.sleep(start_delay_s)
    runs = []
    for w in wavs:
        run = stream_once(client, w)
        runs.append(run)
        heard_s = run["first_audio_s"] + run["answer_audio_s"] + run["stall_s"]
        time.sleep(max(0.0, heard_s - run["total_s"]))  # the rest of the answer plays
        time.sleep(wav_seconds(w))  # the next question is spoken
    return runs


def back_to_back(base_url: str, wavs: list[bytes]) -> list[dict]:
    """A conversation that asks again the moment an answer's stream ends."""
    client = openai.OpenAI(base_url=base_url, api_key="bench", max_retries=0)
    return [stream_once(client, w) for w in wavs]


class Server:
    """``omnivox serve`` with the default engine, in a subprocess."""

    def __init__(self, data_dir: Path, python_path: Sequence[Path] = ()) -> None:
        self._stack = contextlib.ExitStack()
        args = ["--log-level", "warning"]
        self.served = self._stack.enter_context(
            serve_process(args, data_dir, ready_timeout_s=300, python_path=python_path)
        )
        self.base_url = self.served.base_url

    def peak_rss_mb(self) -> float:
        status = Path(f"/proc/{self.served.process.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(match.group(1)) / 1024, 1) if match else float("nan")

    def stop(self) -> None:
        self._stack.close()


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    argparse.ArgumentParser(  # no options: --help says what it measures
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()
    tune_malloc()  # the server's allocator settings, so components are timed alike
    results: dict[str, Any] = {
        "facts": run_facts(),
        "questions": len(QUESTIONS),
        "single_rounds": SINGLE_ROUNDS,
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wavs = [espeak(q, folder) for q in QUESTIONS]
        server = Server(folder / "data")
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="bench", max_retries=0)
            settings = Settings(data_dir=folder / "engine-data", threads=2)
            engine = CascadeEngine(settings)
            asyncio.run(engine.start())
            measure_components(engine, QUESTIONS[0], wavs[0], salt=-1)  # warm-ups
            stream_once(client, variant(wavs[0], 999))
            components, single = [], []
            for round_ in range(SINGLE_ROUNDS):
                for i, (q, w) in enumerate(zip(QUESTIONS, wavs, strict=True)):
                    components.append(measure_components(engine, q, w, 100 * round_ + i))
                    single.append(stream_once(client, variant(w, 1 + round_)))
                    c = components[-1]
                    progress(
                        f"round {round_ + 1}, question {i + 1}/{len(QUESTIONS)}: floor "
                        f"{c.floor_s} s, first audio {single[-1]['first_audio_s']} s; "
                        f"{c.chat_tokens} tokens, {c.reply!r}"
                    )
            results["hearing_four_at_once"] = measure_hearing(engine, wavs)
            progress(f"four questions at once: {results['hearing_four_at_once']}")
            asyncio.run(engine.close())
            del engine

            starts = random.Random(7).sample(range(int(START_SPREAD_S * 10)), CONCURRENCY)

            def clips_of(offset: int, salt: int) -> list[bytes]:
                """Conversation ``offset``'s questions, as clips no other request sends."""
                return [variant(w, salt + offset) for w in wavs[offset:] + wavs[:offset]]

            turns_salt = 1 + SINGLE_ROUNDS  # after the single rounds' 1 .. SINGLE_ROUNDS

            # One process per conversation: clients in threads of one process would wait
            # for each other's GIL while streams arrive, and count that as server time.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(CONCURRENCY, mp_context=spawn) as pool:
                turns = [
                    pool.submit(
                        take_turns, server.base_url, clips_of(i, turns_salt), starts[i] / 10
                    )
                    for i in range(CONCURRENCY)
                ]
                concurrent = [r for f in turns for r in f.result()]
                progress(f"turn-taking: {len(concurrent)} answers")
                rushes = [
                    pool.submit(
                        back_to_back, server.base_url, clips_of(i, turns_salt + CONCURRENCY)
                    )
                    for i in range(CONCURRENCY)
                ]
                saturated = [r for f in rushes for r in f.result()]
                progress(f"back to back: {len(saturated)} answers")
            results["server_peak_rss_mb"] = server.peak_rss_mb()
        finally:
            server.stop()
    results["per_question"] = [
        {
            **asdict(c),
            "round": 1 + n // len(QUESTIONS),
            "stream_first_audio_s": s["first_audio_s"],
            "stream_total_s": s["total_s"],
            "stream_stall_s": s["stall_s"],
            "stream_reply": s["transcript"],
        }
        for n, (c, s) in enumerate(zip(components, single, strict=True))
    ]
    results["summary"] = summarise(components, single, concurrent, saturated)
    timed = ("first_audio_s", "total_s", "answer_audio_s", "stall_s")
    results["concurrent_runs"] = [{k: r[k] for k in timed} for r in concurrent]
    results["back_to_back_runs"] = [{k: r[k] for k in timed} for r in saturated]
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"wrote {out}")


def summarise(
    components: list[Components],
    single: list[dict[str, Any]],
    concurrent: list[dict[str, Any]],
    saturated: list[dict[str, Any]],
) -> dict[str, Any]:
    first = [s["first_audio_s"] for s in single]
    long = [(c, s) for c, s in zip(components, single, strict=True) if c.sentences >= 3]
    pairs = list(zip(components, single, strict=True))
    ratio_floor = [s["first_audio_s"] / c.floor_s for c, s in pairs]
    ratio_sound_floor = [s["first_audio_s"] / c.sound_floor_s for c, s in pairs]
    ratio_naive_long = [s["first_audio_s"] / c.naive_time_to_audio_s for c, s in long]
    concurrent_first = [r["first_audio_s"] for r in concurrent]
    saturated_first = [r["first_audio_s"] for r in saturated]
    return {
        "asr_rtf_p50": statistics.median(c.asr_rtf for c in components),
        "chat_tokens_per_s_p50": statistics.median(c.chat_tokens_per_s for c in components),
        "tts_rtf_p50": statistics.median(c.tts_rtf for c in components),
        "floor_s_p50": statistics.median(c.floor_s for c in components),
        "sound_floor_s_p50": statistics.median(c.sound_floor_s for c in components),
        "naive_time_to_audio_s_p50": statistics.median(c.naive_time_to_audio_s for c in components),
        "first_audio_s_p50": statistics.median(first),
        "first_audio_s_p95": percentile(first, 0.95),
        "total_s_p50": statistics.median(s["total_s"] for s in single),
        "first_audio_over_floor_p50": round(statistics.median(ratio_floor), 3),
        "first_audio_over_sound_floor_p50": round(statistics.median(ratio_sound_floor), 3),
        "answers_of_3_plus_sentences": len(long),
        "first_audio_over_naive_p50_3_plus_sentences": (
            round(statistics.median(ratio_naive_long), 3) if long else None
        ),
        "concurrent_conversations": CONCURRENCY,
        "concurrent_first_audio_s_p50": statistics.median(concurrent_first),
        "concurrent_first_audio_s_p95": percentile(concurrent_first, 0.95),
        "concurrent_p95_over_single_p50": round(
            percentile(concurrent_first, 0.95) / statistics.median(first), 3
        ),
        **stalls("single", single),
        **stalls("concurrent", concurrent),
        "back_to_back_first_audio_s_p50": statistics.median(saturated_first),
        "back_to_back_first_audio_s_p95": percentile(saturated_first, 0.95),
        "back_to_back_p95_over_single_p50": round(
            percentile(saturated_first, 0.95) / statistics.median(first), 3
        ),
        **stalls("back_to_back", saturated),
    }


def stalls(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """How often, and for how long, a listener playing each answer from its first byte
    heard a gap: the answers whose gaps add up to ``AUDIBLE_STALL_S`` or more, and the
    p95 and the longest of the answers' summed gaps."""
    stall = [r["stall_s"] for r in runs]
    return {
        f"{name}_answers_with_gaps": sum(s >= AUDIBLE_STALL_S for s in stall),
        f"{name}_gap_s_p95": percentile(stall, 0.95),
        f"{name}_gap_s_max": max(stall),
    }


def print_table(results: dict[str, Any]) -> None:
    print(f"machine: {results['facts']['cpu']}, {results['facts']['machine']}")
    print(
        f"{'round':<6}{'question':<52}{'q s':>5}{'asr':>7}{'tok/s':>7}{'sent':>5}{'floor':>7}"
        f"{'naive':>7}{'first':>7}{'total':>7}"
    )
    for row in results["per_question"]:
        print(
            f"{row['round']:<6}{row['question'][:50]:<52}{row['question_s']:>5.1f}{row['asr_s']:>7.2f}"
            f"{row['chat_tokens_per_s']:>7.0f}{row['sentences']:>5}{row['floor_s']:>7.2f}"
            f"{row['naive_time_to_audio_s']:>7.2f}{row['stream_first_audio_s']:>7.2f}"
            f"{row['stream_total_s']:>7.2f}"
        )
    for key, value in results["summary"].items():
        print(f"  {key}: {value}")
    print(f"  server_peak_rss_mb: {results['server_peak_rss_mb']}")
    for key, value in results.get("hearing_four_at_once", {}).items():
        print(f"  four questions at once, {key}: {value}")


if __name__ == "__main__":
    main()
