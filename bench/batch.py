"""A spoken batch on spare capacity: its lines per minute, and what it costs people talking.

``omnivox serve`` (the embedded cascade, keyless on loopback, a temporary data
directory) is given a batch of ``--lines`` spoken Chat Completions lines (50 by
default) while one person talks to it. Each line is one of the twelve questions of
``bench.cascade`` (espeak-ng, in turn) as a WAV ``input_audio`` part, answered with
``modalities`` text and audio (``alloy``, ``wav``), ``max_completion_tokens`` 100 and
``temperature`` 0.6.

The person asks ``--requests`` spoken questions (the same questions, in turn, the same
cap and temperature), streamed (pcm16, the official SDK), one after another, each
after ``THINK_S`` (1 s) of thought; the time is from the request to the first chunk
with audio data, as the SDK sees it. Three phases, in this order:

1. **idle, before**: the questions with no batch on the server;
2. **busy**: the batch is uploaded (``files.create``, purpose ``batch``) and created
   (``batches.create``, ``/v1/chat/completions``, ``24h``); once it is ``in_progress``
   the same questions are asked again, while it runs (a request starts only while the
   batch is still in progress); then the batch is left to finish alone (at most
   ``--batch-timeout`` s after its creation; past that it is cancelled);
3. **idle, after**: the questions again, the batch done.

Idle is both idle phases together (they bracket the busy one, so a drift in the
host's speed enters both sides); each is reported alone too. Every clip the server
hears is new to it: the lowest bits of 64 samples are drawn at random, so its
transcript cache never answers from memory.

The batch is watched by ``batches.retrieve`` every 0.5 s (in every phase the watcher
makes the same one call per 0.5 s, so that the server sees the same polling idle and
busy). From when each status was first seen: create -> ``in_progress`` ->
``completed``; lines per minute over the whole run of its lines (``in_progress`` to
all lines answered), while the person was talking (first to last busy request), and
alone (from the first line answered after the person's last busy request to the last
line: no interactive request running). For each busy request, the lines seen ended
during it and within ``THINK_S`` after it (no line starts while a request is answered,
so a line that ends then ran alongside it). The output file is read back and each line
checked for a 200 answer with audio.

Goal: the busy first-audio p50 at most 1.2 x the idle p50, and the batch completed
with every line answered (it yields to the person, and is not starved by them).

    .venv/bin/python -m bench.batch [--lines 50] [--requests 24] [--quick]
        [--base-url http://127.0.0.1:8000/v1 [--api-key KEY]] [--out FILE]

Prints a table and writes bench/batch.json (with the run's facts, every request's row,
the batch's progress and the summary).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import random
import statistics
import tempfile
import threading
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openai

from bench.cascade import QUESTIONS, VOICE, Server, espeak, percentile, progress
from bench.facts import run_facts

OUT = Path(__file__).with_suffix(".json")
MODEL = "gpt-4o-audio-preview"
MAX_TOKENS = 100
TEMPERATURE = 0.6
THINK_S = 1.0  # the person's pause before each question
POLL_S = 0.5  # batches.retrieve this often
PCM_BYTES_PER_S = 48_000  # pcm16 at 24 kHz, the streamed answer's audio
NONCE_BITS = 64  # random low bits that make each clip new to the server
GOAL_RATIO = 1.2
DEFAULT_LINES = 50
DEFAULT_REQUESTS = 24
QUICK_LINES = 6
QUICK_REQUESTS = 4
FINAL = ("completed", "failed", "expired", "cancelled")


def fresh(wav: bytes, rng: random.Random) -> bytes:
    """``wav`` (16-bit mono) with the lowest bits of 64 samples, spread over the clip,
    drawn at random: the same question, a clip no earlier request sent."""
    with wave.open(io.BytesIO(wav)) as reader:
        params = reader.getparams()
        frames = reader.readframes(reader.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").copy()
    at = np.linspace(0, len(samples) - 1, NONCE_BITS).astype(int)
    bits = rng.getrandbits(NONCE_BITS)
    samples[at] = (samples[at] & ~1) | [(bits >> i) & 1 for i in range(NONCE_BITS)]
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setparams(params)
        writer.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def spoken_message(wav: bytes) -> list[dict[str, Any]]:
    return [
        {
            "role": "user",
            "content": [
                {
                    "type": "input_audio",
                    "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                }
            ],
        }
    ]


def batch_file(wavs: list[bytes], lines: int, rng: random.Random) -> bytes:
    """``lines`` request lines, cycling through the questions, each clip made new."""
    out = []
    for i in range(lines):
        body = {
            "model": MODEL,
            "modalities": ["text", "audio"],
            "audio": {"voice": VOICE, "format": "wav"},
            "max_completion_tokens": MAX_TOKENS,
            "temperature": TEMPERATURE,
            "messages": spoken_message(fresh(wavs[i % len(wavs)], rng)),
        }
        line = {"custom_id": f"line-{i}", "method": "POST", "url": "/v1/chat/completions"}
        out.append(json.dumps({**line, "body": body}))
    return ("\n".join(out) + "\n").encode()


def base64_bytes(data: str) -> int:
    return len(data) * 3 // 4 - data[-2:].count("=")


def stream_once(client: openai.OpenAI, wav: bytes) -> dict[str, Any]:
    """One spoken question, streamed: first audio and total time as the SDK sees them."""
    start = time.perf_counter()
    first_audio_s = None
    audio_bytes = 0
    transcript = []
    for chunk in client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": VOICE, "format": "pcm16"},
        max_completion_tokens=MAX_TOKENS,
        temperature=TEMPERATURE,
        stream=True,
        messages=spoken_message(wav),  # type: ignore[arg-type]
    ):
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is None:
            continue
        data = audio.get("data") if isinstance(audio, dict) else getattr(audio, "data", None)
        text = (
            audio.get("transcript")
            if isinstance(audio, dict)
            else getattr(audio, "transcript", None)
        )
        if data:
            if first_audio_s is None:
                first_audio_s = time.perf_counter() - start
            audio_bytes += base64_bytes(data)
        if text:
            transcript.append(text)
    return {
        "first_audio_s": None if first_audio_s is None else round(first_audio_s, 3),
        "total_s": round(time.perf_counter() - start, 3),
        "answer_audio_s": round(audio_bytes / PCM_BYTES_PER_S, 3),
        "answer": "".join(transcript),
    }


@dataclass
class Watcher:
    """Calls ``batches.retrieve`` every ``POLL_S`` in a thread (before a batch exists,
    ``batches.list(limit=1)``, so the server sees the same polling in every phase), and
    keeps every answer with the time its call was sent: what a poll sent at ``t`` shows
    had happened by ``t`` at the latest."""

    client: openai.OpenAI
    t0: float
    batch_id: str | None = None
    polls: list[dict[str, Any]] = field(default_factory=list)
    first_seen: dict[str, float] = field(default_factory=dict)
    last: dict[str, Any] | None = None
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def _run(self) -> None:
        while not self._stop.is_set():
            tick = time.perf_counter()
            try:
                self.poll()
            except openai.OpenAIError:
                self.errors += 1
            self._stop.wait(max(0.0, POLL_S - (time.perf_counter() - tick)))

    def poll(self) -> None:
        if self.batch_id is None:
            self.client.batches.list(limit=1)
            return
        sent = round(self.now(), 3)
        batch = self.client.batches.retrieve(self.batch_id)
        counts = batch.request_counts
        sample = {
            "t_s": sent,
            "status": batch.status,
            "completed": counts.completed if counts else 0,
            "failed": counts.failed if counts else 0,
            "total": counts.total if counts else 0,
        }
        self.first_seen.setdefault(batch.status, sent)
        self.polls.append(sample)
        self.last = sample

    @property
    def status(self) -> str | None:
        return self.last["status"] if self.last else None

    @property
    def answered(self) -> int:
        return self.last["completed"] + self.last["failed"] if self.last else 0

    def answered_by(self, t_s: float) -> int:
        """Lines answered by ``t_s``, as the first poll sent at or after it shows them."""
        poll = next((p for p in self.polls if p["t_s"] >= t_s), self.last)
        return poll["completed"] + poll["failed"] if poll else 0

    def changes(self) -> list[dict[str, Any]]:
        """The polls that showed a new status or new counts."""
        out: list[dict[str, Any]] = []
        for p in self.polls:
            if not out or any(out[-1][k] != p[k] for k in p if k != "t_s"):
                out.append(p)
        return out


def ask(
    client: openai.OpenAI,
    wavs: list[bytes],
    n: int,
    phase: str,
    rng: random.Random,
    watcher: Watcher,
    while_running: bool = False,
) -> list[dict[str, Any]]:
    """``n`` questions, one after another, each after ``THINK_S``; with ``while_running``,
    only while the batch is in progress."""
    rows = []
    for i in range(n):
        time.sleep(THINK_S)
        if while_running and watcher.status != "in_progress":
            progress(f"{phase}: the batch is {watcher.status}; {i} requests asked")
            break
        question = i % len(wavs)
        wav = fresh(wavs[question], rng)
        started = watcher.now()
        status_before = watcher.status
        run = stream_once(client, wav)
        ended = watcher.now()
        row = {
            "phase": phase,
            "index": i,
            "question": QUESTIONS[question],
            "started_s": round(started, 3),
            "ended_s": round(ended, 3),
            **run,
        }
        if while_running:
            row["batch_status_at_start"] = status_before
            row["batch_status_at_end"] = watcher.status
        rows.append(row)
        progress(
            f"{phase} {i + 1}/{n}: first audio {run['first_audio_s']} s, total {run['total_s']} s"
            + (
                f"; batch {watcher.status}, {watcher.answered} lines answered"
                if watcher.batch_id
                else ""
            )
        )
    return rows


def spread(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "p50": None, "p95": None}
    return {
        "n": len(values),
        "p50": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
    }


def firsts(rows: list[dict[str, Any]]) -> list[float]:
    return [r["first_audio_s"] for r in rows if r["first_audio_s"] is not None]


def per_minute(lines: int, seconds: float | None) -> float | None:
    if seconds is None or seconds <= 0 or lines <= 0:
        return None
    return round(lines * 60 / seconds, 2)


def batch_rates(
    watcher: Watcher, created_s: float, busy: list[dict[str, Any]], lines: int
) -> dict[str, Any]:
    """When the batch's statuses were first seen, and its lines per minute: overall,
    while the person talked, and alone after the person's last busy request."""
    seen = watcher.first_seen
    samples = watcher.polls
    all_answered = next(
        (s["t_s"] for s in samples if s["completed"] + s["failed"] >= lines and s["total"]), None
    )
    in_progress = seen.get("in_progress")
    out: dict[str, Any] = {
        "created_s": round(created_s, 3),
        "to_in_progress_s": None if in_progress is None else round(in_progress - created_s, 3),
        "to_all_lines_answered_s": (
            None if all_answered is None else round(all_answered - created_s, 3)
        ),
        "to_completed_s": (
            round(seen["completed"] - created_s, 3) if "completed" in seen else None
        ),
        "final_status": watcher.status,
        "lines_answered": watcher.answered,
        "lines_failed": watcher.last["failed"] if watcher.last else 0,
    }
    run_s = None if in_progress is None or all_answered is None else all_answered - in_progress
    out["lines_per_min_whole"] = per_minute(watcher.answered, run_s)
    if busy:
        begin, end = busy[0]["started_s"], busy[-1]["ended_s"]
        during = watcher.answered_by(end) - watcher.answered_by(begin)
        out["busy_stretch_s"] = round(end - begin, 3)
        out["lines_answered_while_talking"] = during
        out["lines_per_min_while_talking"] = per_minute(during, end - begin)
        # Alone: from the first line seen answered after the last busy request's end to
        # the last line. That first line ran partly while the person talked; it only
        # marks the start of the stretch and is not counted.
        after = [s for s in samples if s["t_s"] >= end]
        first = next(
            (s for s in after if s["completed"] + s["failed"] > watcher.answered_by(end)), None
        )
        if first is not None and all_answered is not None:
            lines_alone = watcher.answered - (first["completed"] + first["failed"])
            out["alone_stretch_s"] = round(all_answered - first["t_s"], 3)
            out["lines_answered_alone"] = lines_alone
            out["lines_per_min_alone"] = per_minute(lines_alone, all_answered - first["t_s"])
        else:
            out["lines_per_min_alone"] = None
    return out


def check_output(client: openai.OpenAI, batch: Any) -> dict[str, Any]:
    """The output file's lines: how many were answered 200 with audio and a transcript."""
    out: dict[str, Any] = {"output_lines": 0, "answered_200": 0, "with_audio": 0}
    if getattr(batch, "output_file_id", None):
        text = client.files.content(batch.output_file_id).text
        tokens, text_tokens = [], []
        for raw in text.splitlines():
            if not raw.strip():
                continue
            line = json.loads(raw)
            out["output_lines"] += 1
            response = line.get("response") or {}
            if response.get("status_code") == 200:
                out["answered_200"] += 1
            body = response.get("body") or {}
            message = ((body.get("choices") or [{}])[0]).get("message") or {}
            audio = message.get("audio") or {}
            if audio.get("data") and audio.get("transcript"):
                out["with_audio"] += 1
            usage = body.get("usage") or {}
            if usage.get("completion_tokens") is not None:
                tokens.append(usage["completion_tokens"])
            details = usage.get("completion_tokens_details") or {}
            if details.get("text_tokens") is not None:
                text_tokens.append(details["text_tokens"])
        out["completion_tokens_p50"] = statistics.median(tokens) if tokens else None
        out["completion_text_tokens_p50"] = statistics.median(text_tokens) if text_tokens else None
    if getattr(batch, "error_file_id", None):
        text = client.files.content(batch.error_file_id).text
        out["error_lines"] = [json.loads(raw) for raw in text.splitlines() if raw.strip()][:5]
    return out


def run(args: argparse.Namespace, base_url: str, wavs: list[bytes]) -> dict[str, Any]:
    rng = random.Random()
    client = openai.OpenAI(
        base_url=base_url, api_key=args.api_key or "bench", max_retries=0, timeout=600
    )
    t0 = time.perf_counter()
    watcher = Watcher(
        openai.OpenAI(
            base_url=base_url, api_key=args.api_key or "bench", max_retries=0, timeout=60
        ),
        t0,
    )
    for wav in wavs[:2]:  # warm-ups: the streamed path, then the batch's (not streamed, wav)
        stream_once(client, fresh(wav, rng))
    client.chat.completions.create(
        model=MODEL,
        modalities=["text", "audio"],
        audio={"voice": VOICE, "format": "wav"},
        max_completion_tokens=MAX_TOKENS,
        temperature=TEMPERATURE,
        messages=spoken_message(fresh(wavs[1 % len(wavs)], rng)),  # type: ignore[arg-type]
    )
    watcher.start()
    try:
        before = ask(client, wavs, args.requests, "idle before", rng, watcher)
        data = batch_file(wavs, args.lines, rng)
        uploaded = client.files.create(file=("batch.jsonl", data), purpose="batch")
        created_s = watcher.now()
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint="/v1/chat/completions",
            completion_window="24h",
            metadata={"bench": "bench.batch"},
        )
        watcher.batch_id = batch.id
        progress(f"batch {batch.id}: {args.lines} lines, {len(data) / 1e6:.1f} MB")
        while watcher.status in (None, "validating") and watcher.now() - created_s < 120:
            time.sleep(0.05)
        busy = ask(client, wavs, args.requests, "busy", rng, watcher, while_running=True)
        deadline = created_s + args.batch_timeout
        while watcher.status not in FINAL and watcher.now() < deadline:
            time.sleep(POLL_S)
        timed_out = watcher.status not in FINAL
        if timed_out:
            progress(f"the batch is not done after {args.batch_timeout} s: cancelling it")
            client.batches.cancel(batch.id)
            while watcher.status not in FINAL and watcher.now() < deadline + 300:
                time.sleep(POLL_S)
        progress(f"batch {watcher.status}: {watcher.answered} of {args.lines} lines answered")
        after = ask(client, wavs, args.requests, "idle after", rng, watcher)
    finally:
        watcher.stop()
    final = client.batches.retrieve(batch.id)
    for row in busy:
        start, end = row["started_s"], row["ended_s"]
        row["lines_ended_during"] = watcher.answered_by(end) - watcher.answered_by(start)
        # No line starts while a request is answered, so a line that ends within
        # THINK_S after one ran alongside it.
        row["lines_ended_just_after"] = watcher.answered_by(end + THINK_S) - watcher.answered_by(
            end
        )
    rates = batch_rates(watcher, created_s, busy, args.lines)
    rates["timed_out"] = timed_out
    rates["server_in_progress_at_minus_created_at_s"] = (
        final.in_progress_at - final.created_at if final.in_progress_at else None
    )
    rates["server_completed_at_minus_created_at_s"] = (
        final.completed_at - final.created_at if final.completed_at else None
    )
    rates["input_file_mb"] = round(len(data) / 1e6, 2)
    rates["usage"] = final.usage.model_dump() if getattr(final, "usage", None) else None
    rates |= check_output(client, final)
    return {
        "rows": before + busy + after,
        "batch": rates,
        "progress": watcher.changes(),
        "poll_errors": watcher.errors,
    }


def summarise(rows: list[dict[str, Any]], batch: dict[str, Any], lines: int) -> dict[str, Any]:
    before = [r for r in rows if r["phase"] == "idle before"]
    after = [r for r in rows if r["phase"] == "idle after"]
    busy = [r for r in rows if r["phase"] == "busy"]
    idle_all, busy_all = spread(firsts(before + after)), spread(firsts(busy))
    ratio = (
        round(busy_all["p50"] / idle_all["p50"], 3) if busy_all["p50"] and idle_all["p50"] else None
    )
    finished = (
        batch["final_status"] == "completed"
        and batch.get("answered_200") == lines
        and batch.get("with_audio") == lines
    )
    no_audio = sum(r["first_audio_s"] is None for r in rows)
    return {
        "first_audio_s": {
            "idle": idle_all,
            "idle_before": spread(firsts(before)),
            "idle_after": spread(firsts(after)),
            "busy": busy_all,
        },
        "total_s_p50": {
            "idle": spread([r["total_s"] for r in before + after])["p50"],
            "busy": spread([r["total_s"] for r in busy])["p50"],
        },
        "busy_over_idle_p50": ratio,
        "busy_over_idle_before_p50": (
            round(busy_all["p50"] / spread(firsts(before))["p50"], 3)
            if busy_all["p50"] and before
            else None
        ),
        "busy_over_idle_after_p50": (
            round(busy_all["p50"] / spread(firsts(after))["p50"], 3)
            if busy_all["p50"] and after
            else None
        ),
        "busy_p95_over_idle_p95": (
            round(busy_all["p95"] / idle_all["p95"], 3)
            if busy_all["p95"] and idle_all["p95"]
            else None
        ),
        "busy_requests_during_which_a_line_ended": sum(
            r.get("lines_ended_during", 0) > 0 for r in busy
        ),
        "busy_requests_a_line_ended_just_after": sum(
            r.get("lines_ended_just_after", 0) > 0 for r in busy
        ),
        "requests_without_audio": no_audio,
        "lines_per_min_whole": batch["lines_per_min_whole"],
        "lines_per_min_while_talking": batch.get("lines_per_min_while_talking"),
        "lines_per_min_alone": batch.get("lines_per_min_alone"),
        "batch_finished": finished,
        "goals": {
            f"busy_p50_at_most_{GOAL_RATIO}_x_idle_p50": {
                "value": ratio,
                "limit": GOAL_RATIO,
                "met": ratio is not None and ratio <= GOAL_RATIO and no_audio == 0,
            },
            "batch_finished_every_line": {"value": batch["lines_answered"], "met": finished},
        },
    }


def fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(report: dict[str, Any]) -> None:
    facts, summary, batch = report["facts"], report["summary"], report["batch"]
    print(f"machine: {facts['cpu']}, {facts['machine']}; commit {facts['commit']}")
    print(
        f"{report['lines']} batch lines, {report['requests']} requests a phase, "
        f"think {THINK_S} s, {MAX_TOKENS} tokens at {TEMPERATURE}"
    )
    print(
        f"{'phase':<12}{'#':>3}  {'question':<52}{'first':>7}{'total':>7}{'during':>7}{'after':>6}"
    )
    for r in report["rows"]:
        during, after = r.get("lines_ended_during"), r.get("lines_ended_just_after")
        print(
            f"{r['phase']:<12}{r['index']:>3}  {r['question'][:50]:<52}"
            f"{fmt(r['first_audio_s'], 2):>7}{r['total_s']:>7.2f}"
            f"{'' if during is None else during:>7}{'' if after is None else after:>6}"
        )
    print("first audio, s:")
    print(f"  {'':<28}{'n':>4}{'p50':>8}{'p95':>8}")
    for name, s in summary["first_audio_s"].items():
        print(f"  {name:<28}{s['n']:>4}{fmt(s['p50']):>8}{fmt(s['p95']):>8}")
    print(
        f"  busy / idle p50: {summary['busy_over_idle_p50']} (/ before "
        f"{summary['busy_over_idle_before_p50']}, / after {summary['busy_over_idle_after_p50']}); "
        f"p95 / p95: {summary['busy_p95_over_idle_p95']}"
    )
    print(
        f"  busy requests during which a line ended: "
        f"{summary['busy_requests_during_which_a_line_ended']}, within {THINK_S} s after which "
        f"one ended: {summary['busy_requests_a_line_ended_just_after']}"
    )
    print(
        f"batch: {batch['final_status']}, {batch['lines_answered']} lines answered "
        f"({batch.get('answered_200')} with 200, {batch.get('with_audio')} with audio); "
        f"in_progress after {fmt(batch['to_in_progress_s'])} s, all lines after "
        f"{fmt(batch['to_all_lines_answered_s'], 1)} s, completed after "
        f"{fmt(batch['to_completed_s'], 1)} s"
    )
    print(
        f"  lines/min: whole {fmt(batch['lines_per_min_whole'], 2)}, while talking "
        f"{fmt(batch.get('lines_per_min_while_talking'), 2)} "
        f"({batch.get('lines_answered_while_talking')} lines in {batch.get('busy_stretch_s')} s), "
        f"alone {fmt(batch.get('lines_per_min_alone'), 2)} "
        f"({batch.get('lines_answered_alone')} lines in {batch.get('alone_stretch_s')} s)"
    )
    print("goals:")
    for name, g in summary["goals"].items():
        print(f"  {name:<40} {g['value']}: {'met' if g['met'] else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-url",
        help="a running server's API root (http://host:port/v1) instead of starting one",
    )
    parser.add_argument("--api-key", help="a key for --base-url (sent as Authorization: Bearer)")
    parser.add_argument(
        "--lines", type=int, help=f"lines in the batch ({DEFAULT_LINES}; --quick {QUICK_LINES})"
    )
    parser.add_argument(
        "--requests",
        type=int,
        help=f"interactive requests a phase ({DEFAULT_REQUESTS}; --quick {QUICK_REQUESTS})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a short smoke: {QUICK_LINES} lines, {QUICK_REQUESTS} requests a phase",
    )
    parser.add_argument(
        "--batch-timeout",
        type=float,
        default=1200,
        help="seconds after its creation by which the batch must be done, else it is "
        "cancelled (1200)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"the JSON report ({OUT})")
    args = parser.parse_args()
    if args.lines is None:
        args.lines = QUICK_LINES if args.quick else DEFAULT_LINES
    if args.requests is None:
        args.requests = QUICK_REQUESTS if args.quick else DEFAULT_REQUESTS
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        wavs = [espeak(q, folder) for q in QUESTIONS]
        server = None if args.base_url else Server(folder / "data")
        try:
            base_url = args.base_url or server.base_url  # type: ignore[union-attr]
            measured = run(args, base_url, wavs)
            peak_rss_mb = server.peak_rss_mb() if server else None
        finally:
            if server is not None:
                server.stop()
    report: dict[str, Any] = {
        "facts": run_facts(),
        "server": args.base_url or "omnivox serve from this checkout (the embedded cascade)",
        "lines": args.lines,
        "requests": args.requests,
        "think_s": THINK_S,
        "poll_s": POLL_S,
        "max_completion_tokens": MAX_TOKENS,
        "temperature": TEMPERATURE,
        "server_peak_rss_mb": peak_rss_mb,
        "summary": summarise(measured["rows"], measured["batch"], args.lines),
        "batch": measured["batch"],
        "rows": measured["rows"],
        "batch_progress": measured["progress"],
        "poll_errors": measured["poll_errors"],
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
