"""Render a completion's events as Server-Sent Events, in the order of §3.3.

A role chunk per choice first; then transcript (or content) deltas, pcm16
``data`` deltas whose byte length is a multiple of 6, tool-call fragments
(§3.4: ``index`` on every fragment, ``id``, ``type`` and ``name`` with empty
``arguments`` on a call's first, then ``arguments`` pieces; for the legacy
``functions``, ``function_call`` fragments with the name first); the
audio ``id`` exactly once, on the choice's first audio delta; ``expires_at``
exactly once, in an audio-only delta; one ``finish_reason`` chunk per choice;
with ``include_usage`` a last chunk with ``choices: []``; then ``[DONE]``.
An error after the first byte becomes an SSE error event and ends the stream.

Chunks share a pre-rendered head (``id``, ``created``, ``model`` ...) and only
the per-event part is serialised, which keeps the streaming loop cheap; the
shapes are OpenAI's ``chat.completion.chunk`` (§3.3).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from omnivox.audio import OUTPUT_BYTES_PER_S
from omnivox.audio.chunk import PcmChunker
from omnivox.errors import OmnivoxError, ServerError
from omnivox.serving.chat import CompletionRun
from omnivox.serving.outputs import (
    AudioDone,
    AudioStarted,
    ChoiceAudio,
    ChoiceFinish,
    ChoiceText,
    ChoiceToolCall,
    UsageReady,
    wire_logprobs,
)

log = logging.getLogger(__name__)

MAX_AUDIO_PIECE_BYTES = OUTPUT_BYTES_PER_S  # 1 s of speech per data delta at most
DONE = b"data: [DONE]\n\n"
SSE_MEDIA_TYPE = "text/event-stream; charset=utf-8"
T = TypeVar("T")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class ChunkWriter:
    def __init__(self, run: CompletionRun) -> None:
        head = {
            "id": run.completion_id,
            "object": "chat.completion.chunk",
            "created": run.created,
            "model": run.model,
            "service_tier": run.service_tier,
            "system_fingerprint": run.system_fingerprint,
        }
        self._head = "data: " + _dumps(head)[:-1] + ',"choices":['
        self._tail = '],"usage":null}\n\n' if run.include_usage else "]}\n\n"
        self._include_usage = run.include_usage

    def choice(
        self,
        index: int,
        delta: dict[str, Any],
        finish_reason: str | None = None,
        logprobs: dict[str, Any] | None = None,
    ) -> bytes:
        body = _dumps(
            {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
        )
        return (self._head + body + self._tail).encode()

    def audio_data(self, index: int, pcm_s16le: bytes, audio_id: str | None) -> bytes:
        """A ``data`` delta, built as text: base64 never needs JSON escaping."""
        id_field = f'"id":"{audio_id}",' if audio_id is not None else ""
        body = (
            f'{{"index":{index},"delta":{{"audio":{{{id_field}"data":"'
            + base64.b64encode(pcm_s16le).decode()
            + '"}},"logprobs":null,"finish_reason":null}'
        )
        return (self._head + body + self._tail).encode()

    def usage(self, usage_json: str) -> bytes:
        return (self._head + '],"usage":' + usage_json + "}\n\n").encode()


class _ChoiceState:
    __slots__ = ("audio_id", "chunker")

    def __init__(self) -> None:
        self.audio_id: str | None = None  # set until the id has been sent once
        self.chunker = PcmChunker(max_bytes=MAX_AUDIO_PIECE_BYTES)

    def audio(self, fields: dict[str, Any]) -> dict[str, Any]:
        audio_id = self.take_audio_id()
        return {"audio": fields if audio_id is None else {"id": audio_id, **fields}}

    def take_audio_id(self) -> str | None:
        """The audio id the first time it is asked for, then None."""
        audio_id, self.audio_id = self.audio_id, None
        return audio_id


def render(run: CompletionRun) -> AsyncIterator[bytes]:
    """The SSE byte stream of ``run``; chunks that are ready together leave in one write."""
    return coalesce(_chunks(run))


async def coalesce(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Join chunks that are already available; never hold one back to wait for another.

    Each next chunk is asked for by stepping the producer directly: when it
    answers without suspending, the chunk joins the pending write; when it has
    to wait (for a model, a queue, a timer), what is pending leaves at once and
    the producer is resumed under this task until its chunk arrives. No task
    or extra loop turn per chunk.
    """
    iterator = aiter(chunks)
    buffered: list[bytes] = []
    step: _Step | None = None
    try:
        while True:
            step = _Step(anext(iterator))
            try:
                ready, chunk = step.start()
                if not ready:
                    if buffered:
                        yield b"".join(buffered)
                        buffered = []
                    chunk = await step
            except StopAsyncIteration:
                break
            finally:
                step = step if step.pending else None
            buffered.append(chunk)
        if buffered:
            yield b"".join(buffered)
    finally:
        if step is not None:  # closed while the producer waits: cancel it, let it clean up
            with contextlib.suppress(BaseException):
                await step.cancelled()
        await iterator.aclose()  # type: ignore[attr-defined]


class _Step:
    """One ``anext()`` of a producer, driven by hand: tried at once, awaited if it must wait."""

    __slots__ = ("_awaiting", "_steps", "pending")

    def __init__(self, awaitable: Awaitable[bytes]) -> None:
        self._steps = awaitable.__await__()
        self._awaiting: Any = None  # what the producer suspended on (a future, or None)
        self.pending = False

    def start(self) -> tuple[bool, bytes]:
        """``(True, chunk)`` when the producer answered without suspending."""
        try:
            self._awaiting = self._steps.send(None)
        except StopIteration as ready:
            return True, ready.value
        self.pending = True
        return False, b""

    def __await__(self) -> Generator[Any, Any, bytes]:
        return self._resume(None)

    def cancelled(self) -> Awaitable[bytes]:
        return _Awaiting(self._resume(asyncio.CancelledError()))

    def _resume(self, throw: BaseException | None) -> Generator[Any, Any, bytes]:
        # Hand what the producer waits on to this task, and the task's answers back.
        try:
            if throw is not None:
                self._awaiting = self._steps.throw(throw)
            while True:
                try:
                    sent = yield self._awaiting
                except GeneratorExit:
                    self._steps.close()
                    raise
                except BaseException as exc:  # the task's cancellation, passed on
                    self._awaiting = self._steps.throw(exc)
                else:
                    self._awaiting = self._steps.send(sent)
        except StopIteration as done:
            return done.value
        finally:
            self.pending = False


class _Awaiting:
    __slots__ = ("_steps",)

    def __init__(self, steps: Generator[Any, Any, bytes]) -> None:
        self._steps = steps

    def __await__(self) -> Generator[Any, Any, bytes]:
        return self._steps


async def _chunks(run: CompletionRun) -> AsyncIterator[bytes]:
    writer = ChunkWriter(run)
    speaking = run.audio_format is not None
    states = [_ChoiceState() for _ in range(run.n_choices)]
    for index in range(run.n_choices):
        yield writer.choice(index, {"role": "assistant", "content": None, "refusal": None})
    try:
        async for event in run.events:
            if isinstance(event, ChoiceText):
                if not event.text and not event.logprobs:
                    continue
                state = states[event.index]
                delta = (
                    state.audio({"transcript": event.text}) if speaking else {"content": event.text}
                )
                lp = wire_logprobs(event.logprobs).model_dump() if event.logprobs else None
                yield writer.choice(event.index, delta, logprobs=lp)
            elif isinstance(event, ChoiceAudio):
                state = states[event.index]
                pieces = state.chunker.push(event.pcm_s16le)
                if pieces:
                    yield b"".join(
                        writer.audio_data(event.index, piece, state.take_audio_id())
                        for piece in pieces
                    )
            elif isinstance(event, ChoiceToolCall):
                delta = (
                    {"function_call": _function_call_fragment(event)}
                    if run.legacy_functions
                    else {"tool_calls": [_tool_call_fragment(event)]}
                )
                yield writer.choice(event.index, delta)
            elif isinstance(event, AudioStarted):
                states[event.index].audio_id = event.audio_id
            elif isinstance(event, AudioDone):
                yield b"".join(_audio_end(writer, states[event.index], event))
            elif isinstance(event, ChoiceFinish):
                yield writer.choice(event.index, {}, finish_reason=event.reason)
            elif isinstance(event, UsageReady) and run.include_usage:
                yield writer.usage(event.usage.dump())
    except OmnivoxError as exc:
        yield error_event(exc)
        return
    except Exception:
        log.exception("generation failed after the stream had started")
        yield error_event(ServerError())
        return
    yield DONE


def _tool_call_fragment(event: ChoiceToolCall) -> dict[str, Any]:
    fragment: dict[str, Any] = {"index": event.call_index}
    function: dict[str, str] = {"arguments": event.arguments}
    if event.call_id is not None:
        fragment["id"] = event.call_id
        fragment["type"] = "function"
    if event.name is not None:
        function = {"name": event.name, **function}
    fragment["function"] = function
    return fragment


def _function_call_fragment(event: ChoiceToolCall) -> dict[str, str]:
    if event.name is not None:
        return {"name": event.name, "arguments": event.arguments}
    return {"arguments": event.arguments}


def _audio_end(writer: ChunkWriter, state: _ChoiceState, event: AudioDone) -> list[bytes]:
    chunks = []
    rest = state.chunker.flush()
    if rest:
        chunks.append(writer.audio_data(event.index, rest, state.take_audio_id()))
    if state.audio_id is not None:  # a silent, empty answer still names its audio once
        chunks.append(writer.choice(event.index, state.audio({"transcript": ""})))
    chunks.append(writer.choice(event.index, {"audio": {"expires_at": event.expires_at}}))
    return chunks


def data_event(json_text: str) -> bytes:
    """One Server-Sent Event whose data is ``json_text``."""
    return f"data: {json_text}\n\n".encode()


@dataclass(frozen=True, slots=True)
class StreamFailed:
    """The last item of ``until_error`` when the work failed: the error event to send."""

    event: bytes


async def until_error(events: AsyncIterator[T]) -> AsyncIterator[T | StreamFailed]:
    """``events``, or, once the work fails after the stream has begun, a ``StreamFailed``
    as the last item: OpenAI's error shape for an ``OmnivoxError``, a plain server error
    (logged) for anything else."""
    try:
        async for event in events:
            yield event
    except OmnivoxError as exc:
        yield StreamFailed(error_event(exc))
    except Exception:
        log.exception("the work failed after the stream had started")
        yield StreamFailed(error_event(ServerError()))


def error_event(exc: OmnivoxError) -> bytes:
    return ("data: " + _dumps(exc.body()) + "\n\n").encode()
