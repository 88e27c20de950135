"""A small deterministic engine for API tests and benchmarks; never a CLI default.

It answers "You said: <the last user text>" (or, for spoken input, how many
seconds it heard), one word per ``TextDelta``, and speaks each word as a short
tone (its pitch taken from the word) right after writing it, so streaming
order, audio lengths and usage are predictable. Counting tokens as words, it
honours ``max_output_tokens`` and ``stop`` and keeps a small context window.

Prompts that steer it (for error and cancellation tests):
  "fail after one word"  -> raises after the first word (an error mid-stream)
  "fail in prepare"      -> raises a plain RuntimeError in prepare (an internal error)
  "slow"                 -> 0.2 s between words instead of the usual few ms
  "count to N"           -> answers "1 2 3 ... N"

``FakeEngine(tools=True)`` also claims the "tools" and "response_format"
capabilities (the default engine claims neither, and answers as above):
  - it calls a tool when ``tool_choice`` is "required" or names one, and under
    "auto" when the last user text starts with "call " (then the tool named
    next, if there is one); the tool is the named one or the first. Arguments
    give every string property of the schema the user's text (``{"text": ...}``
    without a schema), streamed in pieces of ``ARGUMENT_PIECE_CHARS``; with
    ``parallel_tool_calls`` and "twice" in the text it makes two calls. A call
    is never spoken;
  - after a tool result (the last message is a tool one) it answers
    "The tool said: <result>";
  - with a JSON ``response_format`` it answers ``{"said": "<the user's text>"}``.

It reads text aloud (``speak``) as one tone per word, each ``WORD_DURATION_S``
divided by the speed ("slow" in the text: 0.2 s between words; after the word
"hold" it waits until ``released`` is set), and
"transcribes" a clip as one segment per second of sound, "Second 1." ... (with
"Translated:" before each for a translation; nothing for a silent clip), each
segment's words timed within it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import zlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import numpy as np

from omnivox.engines.base import (
    AudioClip,
    Capability,
    GenerationRequest,
    PreparedGeneration,
    SpeechRequest,
    TranscriptionRequest,
)
from omnivox.engines.events import (
    AudioDelta,
    EngineEvent,
    Finished,
    SpeechEvent,
    SpeechFinished,
    TextDelta,
    TokenLogprob,
    ToolCallDelta,
    TranscribedWord,
    TranscriptionEvent,
    TranscriptionFinished,
    TranscriptionStarted,
    TranscriptSegment,
)

SAMPLE_RATE = 24_000
WORD_DURATION_S = 0.25
CONTEXT_WINDOW_TOKENS = 512
ARGUMENT_PIECE_CHARS = 4


def word_tone(word: str, duration_s: float = WORD_DURATION_S) -> bytes:
    """The tone the fake engine speaks for ``word``: s16le at 24 kHz."""
    pitch_hz = 200 + zlib.crc32(word.encode()) % 600
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * math.pi * pitch_hz * t) * 32767).astype("<i2").tobytes()


class FakeEngine:
    name = "fake"
    context_window_tokens = CONTEXT_WINDOW_TOKENS
    capabilities: frozenset[Capability] = frozenset(
        {"speech", "logprobs", "text_to_speech", "transcription"}
    )
    translates = True

    def __init__(self, word_delay_s: float = 0.002, *, tools: bool = False) -> None:
        self.word_delay_s = word_delay_s
        if tools:
            self.capabilities = self.capabilities | {"tools", "response_format"}
        self.started = False
        self.active_generations = 0
        self.cancelled_generations = 0
        self.finished_generations = 0
        self.released = threading.Event()  # lets a reading go on past the word "hold"
        self.idle_now = False  # what ``idle`` says: an idle engine answers a turn sooner
        self.prepares = 0
        self.began_preparing = threading.Event()  # set by every ``prepare``
        self.user_clips: list[tuple[AudioClip, ...]] = []  # each prepare's last user turn's
        self.roles: list[tuple[str, ...]] = []  # each prepare's turns' roles

    def voice_table(self) -> Mapping[str, str]:
        return {"alloy": "a tone"}

    def model_names(self) -> tuple[str, ...]:
        return ("fake words", "fake tones")

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.started = False

    def idle(self) -> bool:
        return self.idle_now

    def heard(self, clip: AudioClip) -> str | None:
        """It hears a clip's length, not its words: nothing to reuse (input transcription
        goes through ``transcribe``)."""
        return None

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        self.prepares += 1
        self.began_preparing.set()
        self.roles.append(tuple(turn.role for turn in request.turns))
        users = [turn for turn in request.turns if turn.role == "user"]
        if users:
            self.user_clips.append(tuple(p for p in users[-1].parts if isinstance(p, AudioClip)))
        words = sum(len(_turn_text(t).split()) + 3 for t in request.turns)
        if "fail in prepare" in _last_user_text(request):
            raise RuntimeError("a bug inside the engine")
        return PreparedGeneration(request, context_tokens=words, prompt_text_tokens=words)

    def reply_words(self, request: GenerationRequest) -> list[str]:
        said = _last_user_text(request)
        if "tools" in self.capabilities:
            if request.turns and request.turns[-1].role == "tool":
                return ["The", "tool", "said:", *request.turns[-1].text.split()]
            if request.response_format.kind != "text":
                return [json.dumps({"said": said})]
        if said.startswith("count to "):
            return [str(i) for i in range(1, int(said.split()[-1]) + 1)]
        return ["You", "said:", *said.split()]

    async def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        request = prepared.request
        sampling = request.sampling
        said = _last_user_text(request)
        delay_s = 0.2 if "slow" in said else self.word_delay_s
        self.active_generations += 1
        n_tokens = 0
        reason: Any = "stop"
        try:
            calls = self.tool_calls(request) if "tools" in self.capabilities else []
            if calls:
                for index, (name, arguments) in enumerate(calls):
                    yield ToolCallDelta(index, "", name=name)
                    for start in range(0, len(arguments), ARGUMENT_PIECE_CHARS):
                        piece = arguments[start : start + ARGUMENT_PIECE_CHARS]
                        yield ToolCallDelta(index, piece)
                        await asyncio.sleep(delay_s)
                yield Finished("stop", sum(len(a.split()) for _, a in calls))
                self.finished_generations += 1
                return
            text = ""
            for i, word in enumerate(self.reply_words(request)):
                if (
                    sampling.max_output_tokens is not None
                    and n_tokens >= sampling.max_output_tokens
                ):
                    reason = "length"
                    break
                piece = word if i == 0 else " " + word
                if any(s in text + piece for s in sampling.stop):
                    break
                text += piece
                n_tokens += 1
                logprobs = ()
                if sampling.logprobs:
                    top = tuple((f"{piece}{k}", -1.0 - k) for k in range(sampling.top_logprobs))
                    logprobs = (TokenLogprob(piece, -0.5, top),)
                yield TextDelta(piece, logprobs)
                if request.speech is not None:
                    yield AudioDelta(word_tone(word), piece)
                if "fail after one word" in said:
                    raise RuntimeError("the engine broke mid-answer")
                await asyncio.sleep(delay_s)
            yield Finished(reason, n_tokens)
            self.finished_generations += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled_generations += 1
            raise
        finally:
            self.active_generations -= 1

    async def speak(self, request: SpeechRequest) -> AsyncIterator[SpeechEvent]:
        async with contextlib.aclosing(self._counted(self._read(request))) as events:
            async for event in events:
                yield event

    async def transcribe(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptionEvent]:
        async with contextlib.aclosing(self._counted(self._heard(request))) as events:
            async for event in events:
                yield event

    async def _counted(self, events: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """``events``, counted among the active, finished and cancelled generations."""
        self.active_generations += 1
        try:
            async for event in events:
                yield event
            self.finished_generations += 1
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled_generations += 1
            raise
        finally:
            self.active_generations -= 1

    async def _read(self, request: SpeechRequest) -> AsyncIterator[SpeechEvent]:
        words = request.text.split()
        delay_s = 0.2 if "slow" in request.text else self.word_delay_s
        for word in words:
            yield AudioDelta(word_tone(word, WORD_DURATION_S / request.speed))
            if word == "hold":
                await asyncio.to_thread(self.released.wait)
            await asyncio.sleep(delay_s)
        yield SpeechFinished(len(words))

    async def _heard(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptionEvent]:
        clip = request.clip
        yield TranscriptionStarted(request.language or "en", clip.duration_s)
        sound = clip.samples.size > 0 and float(np.abs(clip.samples).max()) > 1e-3
        n_segments = max(1, round(clip.duration_s)) if sound else 0
        prefix = "Translated: " if request.task == "translate" else ""
        n_tokens = 0
        for i in range(n_segments):
            start_s, end_s = float(i), min(float(i + 1), clip.duration_s)
            text = f"{prefix}Second {i + 1}."
            pieces = text.split()
            step_s = (end_s - start_s) / len(pieces)
            words = (
                tuple(
                    TranscribedWord(f" {w}", start_s + k * step_s, start_s + (k + 1) * step_s, 0.9)
                    for k, w in enumerate(pieces)
                )
                if request.word_timestamps
                else ()
            )
            tokens = tuple(range(len(pieces)))
            n_tokens += len(tokens)
            yield TranscriptSegment(
                i,
                int(start_s * 100),
                start_s,
                end_s,
                text,
                tokens,
                request.temperature,
                -0.25,
                1.2,
                0.01,
                words,
            )
            await asyncio.sleep(self.word_delay_s)
        yield TranscriptionFinished(len((request.prompt or "").split()), n_tokens)

    def tool_calls(self, request: GenerationRequest) -> list[tuple[str, str]]:
        """(name, arguments) of the calls to make; none for an answer in words."""
        choice, said = request.tool_choice, _last_user_text(request)
        if not request.tools or choice == "none" or request.turns[-1].role == "tool":
            return []
        names = [tool.name for tool in request.tools]
        if choice == "auto":
            if not said.startswith("call "):
                return []
            wanted = said.split()[1] if len(said.split()) > 1 else ""
            name = wanted if wanted in names else names[0]
        else:
            name = names[0] if choice == "required" else choice
        tool = next(t for t in request.tools if t.name == name)
        properties = (tool.parameters_schema or {}).get("properties", {"text": {"type": "string"}})
        arguments = json.dumps(
            {key: said for key, spec in properties.items() if spec.get("type") == "string"}
        )
        twice = request.parallel_tool_calls and "twice" in said
        return [(name, arguments)] * (2 if twice else 1)


def _turn_text(turn: Any) -> str:
    return " ".join(p if isinstance(p, str) else (p.transcript or "") for p in turn.parts)


def _last_user_text(request: GenerationRequest) -> str:
    for turn in reversed(request.turns):
        if turn.role == "user":
            clips = [p for p in turn.parts if isinstance(p, AudioClip)]
            if clips:
                return f"{sum(c.duration_s for c in clips):.1f} seconds of audio"
            return turn.text
    return ""


def create(settings: Any) -> FakeEngine:
    """Factory for ``omnivox serve --engine devtools.fake_engine:create``."""
    return FakeEngine()
