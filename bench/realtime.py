"""The Realtime API against Chat Completions: time from the end of speech to the first audio.

The twelve spoken questions of ``bench.cascade`` (espeak-ng, trimmed to the speech,
PCM16 mono 24 kHz) are put to ``omnivox serve`` (the embedded cascade) two ways:

- **realtime**: one WebSocket session per question (``/v1/realtime``). After
  ``session.created`` the client sets server VAD (``silence_duration_ms`` 500,
  ``create_response`` true) and waits for ``session.updated``; then it streams 300 ms
  of silence, the question and silence, in 20 ms ``input_audio_buffer.append`` chunks
  at real speed (each chunk sent when its last sample has been "said", to a schedule
  on a monotonic clock) until the first ``response.output_audio.delta``, and reads on
  until that response's ``response.done``. The time is from the end of speech (the
  scheduled send of the chunk whose last sample is the last sample of speech) to the
  arrival of the first audio delta. When ``speech_stopped`` and ``committed`` came is
  recorded too, and each session's events are checked against the order of OpenAI's
  spoken turn (``speech_started``, ``speech_stopped``, ``committed``, the user item,
  ``response.created`` ... ``response.done``).
- **chat**: the same clips through ``/v1/chat/completions`` as a client with the
  same end-of-turn rule uses it: what it recorded (the same 300 ms of silence, the
  speech and 500 ms of silence) is uploaded as an ``input_audio`` WAV once 500 ms of
  silence have passed, and the answer streamed (``modalities`` text and audio, pcm16,
  the official SDK). The time is 500 ms plus the time from the request to the first
  chunk with audio data.

Both paths cap answers at the same 200 tokens and sample alike: a GA session has no
temperature and the server samples its answers at 0.6, so the chat requests ask for
0.6. Question by question the two paths alternate, every question ``--rounds`` times,
so that a drift in the host's speed enters both alike: realtime first in odd rounds, chat
first in even ones. The path asked second finds the question's prompt in the chat
model's KV cache when both clips are heard alike (traced: its first chat step took
0.01-0.05 s, the first path's 0.03-0.17 s); with an even number of rounds each path is
asked second as often.

Then ``--sessions`` realtime sessions at once, each putting the twelve questions one
after another (a fresh session each), for the p95 under load, two ways (as
``bench.cascade`` loads its server):

- *turn-taking* (the goal's measure): each session begins at a random moment of the
  first 8 s (seeded) and, like a person, listens to the whole answer (from its first
  audio delta, at the audio's real rate, with any gaps) before it says the next question;
- *back to back* (a saturation test): each session says its next question the moment
  the previous answer's ``response.done`` has come, the sessions starting 0.5 s apart,
  so that the two cores hardly rest.

Every answer is also played as a listener would hear it, from its first audio delta at
the audio's real rate: its *gaps* are the time that listener waits for audio not yet
arrived.

``--client-commit`` measures the realtime socket with the client's end of turn instead
(``turn_detection`` null; ``input_audio_buffer.commit`` and ``response.create`` sent
500 ms after the end of speech, when the chat client would upload).

Goals on the 2-core machine: the single session's p50 at most silence_duration_ms +
0.6 s, and at most 0.7 x the chat path's p50; with 4 sessions, the p95 at most 2 x the
single session's p50.

    .venv/bin/python -m bench.realtime [--rounds 2] [--sessions 4] [--no-back-to-back]
        [--client-commit] [--base-url http://127.0.0.1:8000/v1 [--api-key KEY]] [--out FILE]

Prints a table and writes bench/realtime.json (with the run's facts).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import random
import statistics
import tempfile
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import openai
from websockets.asyncio.client import ClientConnection, connect

from bench.cascade import (
    MAX_ANSWER_TOKENS,
    OUTPUT_BYTES_PER_S,
    QUESTIONS,
    START_SPREAD_S,
    VOICE,
    Playback,
    Server,
    base64_bytes,
    espeak,
    percentile,
    progress,
    stalls,
)
from bench.facts import run_facts
from omnivox.audio import decode_audio
from omnivox.audio.pcm import float_to_s16le

OUT = Path(__file__).with_suffix(".json")
RATE = 24_000  # Hz, PCM16 mono both ways
CHUNK_S = 0.020
CHUNK_SAMPLES = int(RATE * CHUNK_S)
CHUNK_BYTES = CHUNK_SAMPLES * 2
LEAD_S = 0.300  # silence before each question (at least; the speech ends on a chunk's end)
SILENCE_MS = 500  # the end-of-turn rule: server VAD's silence_duration_ms, and the chat client's
SPEECH_LEVEL = 1e-3  # |sample| above this is speech (espeak-ng's silence is near 0)
NO_AUDIO_S = 20.0  # after the end of speech: a session with no audio by then has failed
ANSWER_LIMIT_S = 120.0  # after the first audio: the answer must be done by then
STAGGER_S = 0.5  # back-to-back sessions start this far apart
START_SEED = 7  # turn-taking sessions' start moments
ROTATE = 3  # concurrent session i starts at question ROTATE * i
REALTIME_MODEL = "gpt-realtime"
CHAT_MODEL = "gpt-4o-audio-preview"
TEMPERATURE = 0.6  # what the server samples realtime answers at (a GA session sets none)
NONCE_BITS = 64  # random low bits that make each turn's audio new to the server
ZERO_CHUNK = base64.b64encode(bytes(CHUNK_BYTES)).decode()

SPOKEN_TURN = (  # OpenAI's order of one spoken turn with server VAD, audio out
    "input_audio_buffer.speech_started",
    "input_audio_buffer.speech_stopped",
    "input_audio_buffer.committed",
    "conversation.item.added",
    "conversation.item.done",
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
    "response.output_audio.delta",
    "response.output_audio.done",
    "response.output_audio_transcript.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.done",
)
VAD_EVENTS = SPOKEN_TURN[:2]


@dataclass(frozen=True)
class Clip:
    """One question as streamed: lead silence, then the speech, in whole chunks."""

    question: str
    recorded: bytes  # PCM16 mono 24 kHz; the speech ends with the last chunk
    speech_bytes: int

    @property
    def speech(self) -> bytes:
        return self.recorded[-self.speech_bytes :]

    @property
    def speech_s(self) -> float:
        return self.speech_bytes / 2 / RATE

    @property
    def speech_start_s(self) -> float:
        return (len(self.recorded) - self.speech_bytes) / 2 / RATE

    @property
    def speech_end_chunks(self) -> int:
        return len(self.recorded) // CHUNK_BYTES

    def chunk(self, k: int) -> str:
        """Chunk ``k`` of the stream, base64: silence after the speech."""
        if k >= self.speech_end_chunks:
            return ZERO_CHUNK
        return base64.b64encode(self.recorded[k * CHUNK_BYTES : (k + 1) * CHUNK_BYTES]).decode()

    def variant(self, rng: random.Random) -> Clip:
        """The same question with the lowest bits of 64 speech samples drawn at random:
        audio the server has not heard, in this run or an earlier one, so that its
        recogniser runs (it keeps transcripts by the audio's hash)."""
        samples = np.frombuffer(self.speech, dtype="<i2").copy()
        at = np.linspace(0, len(samples) - 1, NONCE_BITS).astype(int)
        bits = rng.getrandbits(NONCE_BITS)
        samples[at] = (samples[at] & ~1) | [(bits >> i) & 1 for i in range(NONCE_BITS)]
        speech = samples.astype("<i2").tobytes()
        return Clip(self.question, self.recorded[: -self.speech_bytes] + speech, self.speech_bytes)

    def upload(self) -> bytes:
        """What the chat client sends: all it recorded up to its end of turn, as a WAV."""
        silence = bytes(RATE * SILENCE_MS // 1000 * 2)
        out = io.BytesIO()
        with wave.open(out, "wb") as writer:
            writer.setnchannels(1)
            writer.setsampwidth(2)
            writer.setframerate(RATE)
            writer.writeframes(self.recorded + silence)
        return out.getvalue()


def make_clip(question: str, folder: Path) -> Clip:
    samples = decode_audio(espeak(question, folder), sample_rate=RATE)
    loud = np.flatnonzero(np.abs(samples) > SPEECH_LEVEL)
    speech = float_to_s16le(samples[loud[0] : loud[-1] + 1])
    lead = round(LEAD_S / CHUNK_S) * CHUNK_BYTES + (-len(speech)) % CHUNK_BYTES
    return Clip(question, bytes(lead) + speech, len(speech))


def longest_pause_s(clip: Clip) -> float:
    """The longest stretch of silence inside the speech (VAD must not end the turn there)."""
    samples = np.frombuffer(clip.speech, dtype="<i2").astype(np.float32) / 32768
    loud = np.flatnonzero(np.abs(samples) > SPEECH_LEVEL)
    return float(np.diff(loud).max(initial=0)) / RATE


# ---- the realtime path ---------------------------------------------------------------


def session_config(client_commit: bool) -> dict[str, Any]:
    turn_detection = (
        None
        if client_commit
        else {
            "type": "server_vad",
            "threshold": 0.5,
            "prefix_padding_ms": 300,
            "silence_duration_ms": SILENCE_MS,
            "create_response": True,
            "interrupt_response": True,
        }
    )
    return {
        "type": "realtime",
        "output_modalities": ["audio"],
        "max_output_tokens": MAX_ANSWER_TOKENS,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": RATE},
                "turn_detection": turn_detection,
            },
            "output": {"voice": VOICE},
        },
    }


class ServerRefused(RuntimeError):
    pass


async def next_event(ws: ClientConnection, timeout_s: float) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout_s))


async def open_session(url: str, headers: dict[str, str], client_commit: bool) -> ClientConnection:
    ws = await connect(url, additional_headers=headers, max_size=None, compression=None)
    try:
        for wanted, update in (("session.created", None), ("session.updated", True)):
            if update:
                update_event = {"type": "session.update", "session": session_config(client_commit)}
                await ws.send(json.dumps(update_event))
            event = await next_event(ws, 30)
            if event.get("type") == "error":
                raise ServerRefused(json.dumps(event["error"]))
            if event.get("type") != wanted:
                raise ServerRefused(f"expected {wanted}, got {event.get('type')}")
    except BaseException:
        await ws.close()
        raise
    return ws


async def stream_audio(
    ws: ClientConnection,
    clip: Clip,
    start: float,
    heard: asyncio.Event,
    client_commit: bool,
    lag: list[float],
) -> None:
    """Append the clip, then silence, chunk k at ``start + (k + 1) * CHUNK_S``, until
    ``heard`` is set (or, committing itself, until the end of turn is due)."""
    commit_after = clip.speech_end_chunks + round(SILENCE_MS / 1000 / CHUNK_S)
    last = clip.speech_end_chunks + round(NO_AUDIO_S / CHUNK_S)
    for k in range(last):
        delay = start + (k + 1) * CHUNK_S - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            lag[0] = max(lag[0], -delay)
        if heard.is_set():
            return
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": clip.chunk(k)}))
        if client_commit and k + 1 == commit_after:
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
            await ws.send(json.dumps({"type": "response.create"}))
            return


async def realtime_turn(
    url: str, headers: dict[str, str], clip: Clip, client_commit: bool
) -> dict[str, Any]:
    """One question in a fresh session; times are seconds from the end of speech."""
    ws = await open_session(url, headers, client_commit)
    heard = asyncio.Event()
    lag = [0.0]
    start = time.perf_counter()
    speech_end = start + clip.speech_end_chunks * CHUNK_S
    sender = asyncio.create_task(stream_audio(ws, clip, start, heard, client_commit, lag))
    row: dict[str, Any] = {
        "path": "realtime",
        "question": clip.question,
        "speech_s": round(clip.speech_s, 3),
        "speech_start_ms": round(clip.speech_start_s * 1000),
        "speech_end_ms": round(clip.speech_end_chunks * CHUNK_S * 1000),
    }
    seen: dict[str, float] = {}  # event type -> first arrival, from the end of speech
    order: list[str] = []
    problems: list[str] = []
    answer_id: str | None = None
    early: list[str] = []  # responses created before the end of speech
    playback = Playback()
    audio_bytes = 0
    try:
        deadline = speech_end + NO_AUDIO_S
        while True:
            try:
                event = await next_event(ws, max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                what = "response.done" if "first_audio_s" in row else "the first audio"
                problems.append(f"timed out waiting for {what}")
                break
            at = time.perf_counter() - speech_end
            kind = str(event.get("type"))
            order.append(kind)
            seen.setdefault(kind, at)
            if not isinstance(event.get("event_id"), str):
                problems.append(f"{kind} without a string event_id")
            if kind == "error":
                problems.append(f"error at {at:+.3f} s: {json.dumps(event.get('error'))}")
            elif kind == "input_audio_buffer.speech_started":
                row.setdefault("vad_audio_start_ms", event.get("audio_start_ms"))
            elif kind == "input_audio_buffer.speech_stopped":
                row.setdefault("vad_audio_end_ms", event.get("audio_end_ms"))
            elif kind == "response.created":
                response_id = event["response"]["id"]
                if at < 0:
                    early.append(response_id)
                elif answer_id is None:
                    answer_id = response_id
                    row["response_created_s"] = round(at, 3)
            elif event.get("response_id") == answer_id and answer_id is not None:
                if kind == "response.output_audio.delta":
                    if "first_audio_s" not in row:
                        row["first_audio_s"] = round(at, 3)
                        heard.set()
                        deadline = time.perf_counter() + ANSWER_LIMIT_S
                    playback.arrived(at, audio_bytes / OUTPUT_BYTES_PER_S)
                    audio_bytes += base64_bytes(event.get("delta") or "")
                elif kind == "response.output_audio_transcript.delta":
                    row.setdefault("first_transcript_s", round(at, 3))
                elif kind == "response.output_audio_transcript.done":
                    row["answer"] = event.get("transcript")
            if kind == "response.done":
                response = event.get("response") or {}
                if response.get("id") == answer_id:
                    row["done_s"] = round(at, 3)
                    row["status"] = response.get("status")
                    usage = response.get("usage") or {}
                    row["input_tokens"] = usage.get("input_tokens")
                    row["output_tokens"] = usage.get("output_tokens")
                    break
                if response.get("id") in early:
                    status = response.get("status")
                    problems.append(f"a response created before the end of speech: {status}")
    finally:
        heard.set()
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
        await ws.close()
    for name, key in (
        ("input_audio_buffer.speech_started", "speech_started_s"),
        ("input_audio_buffer.speech_stopped", "speech_stopped_s"),
        ("input_audio_buffer.committed", "committed_s"),
    ):
        if name in seen:
            row[key] = round(seen[name], 3)
    row["send_lag_max_ms"] = round(lag[0] * 1000, 1)
    row["answer_audio_s"] = round(audio_bytes / OUTPUT_BYTES_PER_S, 3)
    row["stall_s"] = round(playback.stall_s, 3)
    if early:
        problems.append(f"{len(early)} response(s) created before the end of speech")
    problems += check_order(order, client_commit)
    row["events"] = compressed(order)
    row["problems"] = problems
    return row


def check_order(order: list[str], client_commit: bool) -> list[str]:
    """What departs from OpenAI's spoken turn: events missing or out of their order,
    and events that should come once and came more often."""
    expected = [e for e in SPOKEN_TURN if not (client_commit and e in VAD_EVENTS)]
    problems = []
    i = 0
    for kind in order:
        if i < len(expected) and kind == expected[i]:
            i += 1
    if i < len(expected):
        problems.append(f"missing or out of order: {expected[i]} (after {expected[i - 1]})")
    for once in ("input_audio_buffer.committed", "response.created", "response.done"):
        if order.count(once) > 1:
            problems.append(f"{once} {order.count(once)} times")
    if not client_commit:
        for once in VAD_EVENTS:
            if order.count(once) > 1:
                problems.append(f"{once} {order.count(once)} times")
    return problems


def compressed(order: list[str]) -> list[str]:
    """The event types in order, a run of one type as ``type xN``."""
    out: list[str] = []
    n = 0
    for i, kind in enumerate(order):
        n += 1
        if i + 1 == len(order) or order[i + 1] != kind:
            out.append(kind if n == 1 else f"{kind} x{n}")
            n = 0
    return out


# ---- the chat path --------------------------------------------------------------------


async def chat_turn(client: openai.AsyncOpenAI, clip: Clip) -> dict[str, Any]:
    """The clip uploaded at the end of turn; times are seconds from the end of speech."""
    wav = clip.upload()
    waited_s = SILENCE_MS / 1000
    start = time.perf_counter()
    row: dict[str, Any] = {"path": "chat", "question": clip.question}
    transcript = []
    stream = await client.chat.completions.create(
        model=CHAT_MODEL,
        modalities=["text", "audio"],
        audio={"voice": VOICE, "format": "pcm16"},
        max_completion_tokens=MAX_ANSWER_TOKENS,
        temperature=TEMPERATURE,
        stream=True,
        stream_options={"include_usage": True},
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
    )
    async for chunk in stream:
        if chunk.usage is not None:
            row["input_tokens"] = chunk.usage.prompt_tokens
            row["output_tokens"] = chunk.usage.completion_tokens
        audio = chunk.choices[0].delta.audio if chunk.choices else None
        if audio is None:
            continue
        data = audio.get("data") if isinstance(audio, dict) else getattr(audio, "data", None)
        text = (
            audio.get("transcript")
            if isinstance(audio, dict)
            else getattr(audio, "transcript", None)
        )
        if data and "first_audio_s" not in row:
            row["first_audio_s"] = round(waited_s + time.perf_counter() - start, 3)
        if text:
            transcript.append(text)
    row["done_s"] = round(waited_s + time.perf_counter() - start, 3)
    row["answer"] = "".join(transcript)
    if "first_audio_s" not in row:
        row["problems"] = ["no audio in the stream"]
    return row


# ---- the run --------------------------------------------------------------------------


@dataclass
class Target:
    base_url: str  # http://host:port/v1
    api_key: str | None
    client_commit: bool
    rng: random.Random = field(default_factory=random.Random)

    @property
    def realtime_url(self) -> str:
        root = self.base_url.rstrip("/")
        ws = "wss://" + root[8:] if root.startswith("https://") else "ws://" + root[7:]
        return f"{ws}/realtime?model={REALTIME_MODEL}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def chat_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key or "bench", max_retries=0, timeout=300
        )

    async def realtime(self, clip: Clip) -> dict[str, Any]:
        return await realtime_turn(self.realtime_url, self.headers, clip, self.client_commit)

    def fresh(self, clip: Clip) -> Clip:
        """``clip`` as no earlier turn of the run said it."""
        return clip.variant(self.rng)


async def single(target: Target, clips: list[Clip], rounds: int) -> list[dict[str, Any]]:
    client = target.chat_client()
    await target.realtime(target.fresh(clips[0]))  # warm-ups
    await chat_turn(client, target.fresh(clips[0]))
    rows = []
    for round_ in range(1, rounds + 1):
        for i, clip in enumerate(clips):
            if round_ % 2:
                rt = await target.realtime(target.fresh(clip))
                chat = await chat_turn(client, target.fresh(clip))
            else:  # the path asked second finds the first one's prompt in the chat model's cache
                chat = await chat_turn(client, target.fresh(clip))
                rt = await target.realtime(target.fresh(clip))
            rows += [{"round": round_, "index": i, **row} for row in (rt, chat)]
            progress(
                f"round {round_}, question {i + 1}/{len(clips)}: first audio realtime "
                f"{rt.get('first_audio_s')} s (stopped {rt.get('speech_stopped_s')}, committed "
                f"{rt.get('committed_s')}), chat {chat.get('first_audio_s')} s"
                + (f"; {rt['problems']}" if rt["problems"] else "")
            )
    await client.close()
    return rows


async def concurrent(
    target: Target, clips: list[Clip], sessions: int, *, turn_taking: bool
) -> list[dict[str, Any]]:
    """``sessions`` at once, taking turns with their listeners or back to back."""
    load = "turn-taking" if turn_taking else "back to back"
    if turn_taking:
        moments = range(max(int(START_SPREAD_S * 10), sessions))
        tenths = random.Random(START_SEED).sample(moments, sessions)
        starts = [t / 10 for t in tenths]
    else:
        starts = [s * STAGGER_S for s in range(sessions)]

    async def conversation(s: int) -> list[dict[str, Any]]:
        await asyncio.sleep(starts[s])
        rows = []
        for j in range(len(clips)):
            i = (j + ROTATE * s) % len(clips)
            row = await target.realtime(target.fresh(clips[i]))
            rows.append({"session": s, "index": i, **row})
            progress(
                f"{load}, session {s + 1}/{sessions}, question {i + 1}: first audio "
                f"{row.get('first_audio_s')} s, gaps {row['stall_s']} s"
                + (f"; {row['problems']}" if row["problems"] else "")
            )
            if turn_taking and "first_audio_s" in row and "done_s" in row:
                heard_s = row["first_audio_s"] + row["answer_audio_s"] + row["stall_s"]
                await asyncio.sleep(max(0.0, heard_s - row["done_s"]))  # the rest plays
        return rows

    return [r for rows in await asyncio.gather(*map(conversation, range(sessions))) for r in rows]


def timed(rows: list[dict[str, Any]], key: str = "first_audio_s") -> list[float]:
    return [r[key] for r in rows if r.get(key) is not None]


def spread(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(statistics.median(values), 3), "p95": percentile(values, 0.95)}


LOADS = ("turn_taking", "back_to_back")  # the keys of the loaded runs, the goal's first


def summarise(
    rows: list[dict[str, Any]], loaded: dict[str, list[dict[str, Any]]], sessions: int
) -> dict[str, Any]:
    realtime = [r for r in rows if r["path"] == "realtime"]
    chat = [r for r in rows if r["path"] == "chat"]
    rt, ch = spread(timed(realtime)), spread(timed(chat))
    under = {load: spread(timed(loaded.get(load, []))) for load in LOADS}
    ld = under["turn_taking"]
    paired = [
        a["first_audio_s"] / b["first_audio_s"]
        for a, b in zip(realtime, chat, strict=True)
        if a.get("first_audio_s") and b.get("first_audio_s")
    ]
    failed = {
        "realtime": sum("first_audio_s" not in r for r in realtime),
        "chat": sum("first_audio_s" not in r for r in chat),
        **{load: sum("first_audio_s" not in r for r in loaded.get(load, [])) for load in LOADS},
    }
    every_loaded = [r for load in LOADS for r in loaded.get(load, [])]
    with_problems = sum(bool(r.get("problems")) for r in realtime + every_loaded)
    summary: dict[str, Any] = {
        "realtime_first_audio_s": {"n": len(timed(realtime)), **rt},
        "chat_first_audio_s": {"n": len(timed(chat)), **ch},
        **{
            f"realtime_{sessions}_sessions_{load}_first_audio_s": {
                "n": len(timed(loaded.get(load, []))),
                **under[load],
            }
            for load in LOADS
        },
        "realtime_speech_stopped_s": spread(timed(realtime, "speech_stopped_s")),
        "realtime_committed_s": spread(timed(realtime, "committed_s")),
        "realtime_response_created_s": spread(timed(realtime, "response_created_s")),
        "realtime_first_transcript_s": spread(timed(realtime, "first_transcript_s")),
        "realtime_output_tokens_p50": spread(timed(realtime, "output_tokens"))["p50"],
        "chat_output_tokens_p50": spread(timed(chat, "output_tokens"))["p50"],
        "realtime_over_chat_p50": (
            round(rt["p50"] / ch["p50"], 3) if rt["p50"] and ch["p50"] else None
        ),
        "realtime_over_chat_paired_p50": (round(statistics.median(paired), 3) if paired else None),
        **{
            f"{sessions}_sessions_{load}_p95_over_single_p50": (
                round(p95 / rt["p50"], 3) if (p95 := under[load]["p95"]) and rt["p50"] else None
            )
            for load in LOADS
        },
        "failed": failed,
        "realtime_sessions_with_problems": with_problems,
    }
    for name, answers in (("single", realtime), *((load, loaded.get(load)) for load in LOADS)):
        if answers:
            summary |= stalls(name, answers)
    ok = not any(failed.values())

    def goal(value: float | None, limit: float | None, failures: bool) -> dict[str, Any]:
        met = value is not None and limit is not None and value <= limit and not failures
        return {"value": value, "limit": None if limit is None else round(limit, 3), "met": met}

    summary["goals"] = {
        "single_p50_at_most_silence_plus_0.6_s": goal(
            rt["p50"], SILENCE_MS / 1000 + 0.6, failed["realtime"] > 0
        ),
        "single_p50_at_most_0.7_x_chat_p50": goal(
            rt["p50"], 0.7 * ch["p50"] if ch["p50"] else None, not ok
        ),
        f"{sessions}_sessions_turn_taking_p95_at_most_2_x_single_p50": goal(
            ld["p95"], 2 * rt["p50"] if rt["p50"] else None, failed["turn_taking"] > 0
        ),
    }
    return summary


def print_table(report: dict[str, Any]) -> None:
    facts, summary, sessions = report["facts"], report["summary"], report["sessions"]
    print(f"machine: {facts['cpu']}, {facts['machine']}; commit {facts['commit']}")
    print(f"realtime end of turn: {report['mode']}, silence {SILENCE_MS} ms")
    print(
        f"{'round':<6}{'question':<52}{'speech':>7}{'stopped':>8}{'commit':>8}{'rt':>7}{'chat':>7}"
    )
    rows = report["per_question"]
    for rt, chat in zip(rows[::2], rows[1::2], strict=True):
        cells = [rt.get(k) for k in ("speech_stopped_s", "committed_s", "first_audio_s")]
        cells.append(chat.get("first_audio_s"))
        shown = "".join(
            f"{'-' if v is None else f'{v:.2f}':>{w}}"
            for v, w in zip(cells, (8, 8, 7, 7), strict=True)
        )
        print(f"{rt['round']:<6}{rt['question'][:50]:<52}{rt['speech_s']:>7.2f}{shown}")
    print("times from the end of speech, s:")
    print(f"  {'path':<44}{'n':>4}{'p50':>8}{'p95':>8}")
    for name, key in (
        ("realtime, 1 session", "realtime_first_audio_s"),
        ("chat completions, upload after 500 ms", "chat_first_audio_s"),
        *(
            (f"realtime, {sessions} sessions, {load.replace('_', ' ')}", key)
            for load in LOADS
            if summary[key := f"realtime_{sessions}_sessions_{load}_first_audio_s"]["n"]
        ),
    ):
        s = summary[key]
        print(f"  {name:<44}{s['n']:>4}{fmt(s['p50']):>8}{fmt(s['p95']):>8}")
    for name, key in (
        ("realtime speech_stopped", "realtime_speech_stopped_s"),
        ("realtime committed", "realtime_committed_s"),
        ("realtime response.created", "realtime_response_created_s"),
        ("realtime first transcript delta", "realtime_first_transcript_s"),
    ):
        s = summary[key]
        print(f"  {name:<44}{'':>4}{fmt(s['p50']):>8}{fmt(s['p95']):>8}")
    print(
        f"  realtime p50 / chat p50: {summary['realtime_over_chat_p50']} (paired, p50: "
        f"{summary['realtime_over_chat_paired_p50']}); {sessions} sessions p95 / single p50: "
        f"turn-taking {summary[f'{sessions}_sessions_turn_taking_p95_over_single_p50']}, "
        f"back to back {summary[f'{sessions}_sessions_back_to_back_p95_over_single_p50']}"
    )
    gaps = [
        f"{name.replace('_', ' ')} {summary[f'{name}_answers_with_gaps']}"
        f" (longest {summary[f'{name}_gap_s_max']} s)"
        for name in ("single", *LOADS)
        if f"{name}_answers_with_gaps" in summary
    ]
    print(f"  answers with gaps: {', '.join(gaps)}")
    print(
        f"  answers' output tokens, p50: realtime {summary['realtime_output_tokens_p50']}, "
        f"chat {summary['chat_output_tokens_p50']}"
    )
    print(
        f"  failed: {summary['failed']}; realtime sessions with problems: "
        f"{summary['realtime_sessions_with_problems']}"
    )
    print("goals:")
    for name, g in summary["goals"].items():
        met = "met" if g["met"] else "NOT met"
        print(f"  {name:<52} {fmt(g['value'])} <= {fmt(g['limit'])}: {met}")


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


async def run(
    target: Target, clips: list[Clip], rounds: int, sessions: int, back_to_back: bool
) -> dict[str, Any]:
    rows = await single(target, clips, rounds)
    loaded: dict[str, list[dict[str, Any]]] = {}
    if sessions > 0:
        loaded["turn_taking"] = await concurrent(target, clips, sessions, turn_taking=True)
        if back_to_back:
            loaded["back_to_back"] = await concurrent(target, clips, sessions, turn_taking=False)
    return {"per_question": rows, **loaded}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--base-url",
        help="a running server's API root (http://host:port/v1) instead of starting one",
    )
    parser.add_argument("--api-key", help="a key for --base-url (sent as Authorization: Bearer)")
    parser.add_argument("--rounds", type=int, default=2, help="times each question is asked alone")
    parser.add_argument(
        "--sessions", type=int, default=4, help="concurrent realtime sessions (0: none)"
    )
    parser.add_argument(
        "--no-back-to-back",
        action="store_true",
        help="leave out the back-to-back sessions (the saturation test)",
    )
    parser.add_argument(
        "--questions", type=int, default=len(QUESTIONS), help="the first N of the twelve"
    )
    parser.add_argument(
        "--client-commit",
        action="store_true",
        help="the client ends the turn (commit + response.create) instead of server VAD",
    )
    parser.add_argument("--out", type=Path, default=OUT, help=f"the JSON report ({OUT})")
    args = parser.parse_args()
    mode = "client commit" if args.client_commit else "server VAD"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clips = [make_clip(q, folder) for q in QUESTIONS[: args.questions]]
        server = None if args.base_url else Server(folder / "data")
        try:
            base_url = args.base_url or server.base_url  # type: ignore[union-attr]
            target = Target(base_url, args.api_key, args.client_commit)
            try:
                measured = asyncio.run(
                    run(target, clips, args.rounds, args.sessions, not args.no_back_to_back)
                )
            except ServerRefused as exc:
                raise SystemExit(f"the server refused the {mode} session: {exc}") from None
            peak_rss_mb = server.peak_rss_mb() if server else None
        finally:
            if server is not None:
                server.stop()
    report: dict[str, Any] = {
        "facts": run_facts(),
        "mode": mode,
        "server": args.base_url or "omnivox serve from this checkout (the embedded cascade)",
        "silence_duration_ms": SILENCE_MS,
        "rounds": args.rounds,
        "sessions": args.sessions,
        "chunk_ms": round(CHUNK_S * 1000),
        "max_answer_tokens": MAX_ANSWER_TOKENS,
        "clips": [
            {
                "question": c.question,
                "speech_s": round(c.speech_s, 3),
                "longest_pause_s": round(longest_pause_s(c), 3),
            }
            for c in clips
        ],
        "server_peak_rss_mb": peak_rss_mb,
    }
    loaded = {load: measured[load] for load in LOADS if load in measured}
    report["summary"] = summarise(measured["per_question"], loaded, args.sessions)
    report |= measured
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
