"""One Realtime response: an engine generation, and the server events it becomes.

``Generation`` runs one engine generation as a task: ``prepare`` at once (dropping
the oldest turns of a conversation that overflows, as its ``Truncation`` says),
then ``generate`` once released, its events waiting in a queue until the response
reads them. A response the client asked for releases it once the response is admitted; a
turn the session recognises speculatively (``turns.SpeechPaused``) releases it at
once, so the answer is being made while the session waits to know whether the turn
is over, and is thrown away (the task cancelled, the engine stopped) if it is not.

``ResponseWriter`` turns the engine's events into OpenAI's event sequence: output
items made as they begin (an assistant message at its first words or audio, a
function call at its first fragment), each with its ``added``, deltas and ``done``
events, in OpenAI's order, and added to the conversation unless the response is
out of band (``conversation: "none"``). Audio leaves in the session's output format.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from omnivox.engines.base import Engine, GenerationRequest, PreparedGeneration, Turn
from omnivox.engines.events import AudioDelta, EngineEvent, Finished, TextDelta, ToolCallDelta
from omnivox.errors import ContextLengthExceededError, OmnivoxError
from omnivox.ids import new_id
from omnivox.serving.realtime.audio_io import OutputAudio
from omnivox.serving.realtime.conversation import AudioTrack, Item, truncate
from omnivox.serving.usage import OutputCount, UsageCounter

Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


_END = object()


@dataclass(frozen=True, slots=True)
class Truncation:
    """When a conversation loses its oldest turns, and how many it loses.

    A prompt overflows when it leaves less than ``reserve_tokens`` of ``window_tokens``
    for the answer, or when the conversation after the instructions holds more than
    ``post_instructions_tokens``. It is then cut to the fewest whole turns that bring it
    within ``retention`` of those limits, so that the turns after it fit too, hearing the
    same kept history (which the engine's cache still holds), until the next overflow.
    """

    window_tokens: int
    reserve_tokens: int
    retention: float
    post_instructions_tokens: int | None = None

    @property
    def room_tokens(self) -> int:
        """The most tokens a prompt may hold."""
        return max(1, self.window_tokens - self.reserve_tokens)

    def overflows(self, prompt_tokens: int, instruction_tokens: int) -> bool:
        limit = self.post_instructions_tokens
        return prompt_tokens > self.room_tokens or (
            limit is not None and prompt_tokens - instruction_tokens > limit
        )

    def kept(self, prompt_tokens: int, instruction_tokens: int) -> bool:
        """Whether a cut to a prompt of ``prompt_tokens`` leaves it room enough."""
        limit = self.post_instructions_tokens
        return prompt_tokens <= self.retention * self.room_tokens and (
            limit is None or prompt_tokens - instruction_tokens <= self.retention * limit
        )


AUTO_RETENTION = 0.75  # of the room a conversation keeps when ``auto`` cuts it
ANSWER_SHARE = 0.25  # of the window kept for an answer without max_output_tokens


def truncation_of(
    setting: Any, window_tokens: int, max_output_tokens: int | None
) -> Truncation | None:
    """The session's ``truncation`` (``auto``, ``disabled`` or a ``retention_ratio``
    object) for a response of at most ``max_output_tokens`` (None: ``inf``)."""
    if setting == "disabled":
        return None
    reserve = (
        max_output_tokens if max_output_tokens is not None else int(window_tokens * ANSWER_SHARE)
    )
    if isinstance(setting, dict):
        limits = setting.get("token_limits") or {}
        return Truncation(
            window_tokens,
            reserve,
            float(setting["retention_ratio"]),
            limits.get("post_instructions"),
        )
    return Truncation(window_tokens, reserve, AUTO_RETENTION)


class Generation:
    def __init__(
        self,
        engine: Engine,
        request: GenerationRequest,
        check: Callable[[PreparedGeneration], None],
        *,
        truncation: Truncation | None = None,
    ) -> None:
        self.request = request
        self.dropped_user_turns = 0  # by a cut (``truncation``) when it was prepared
        self._engine = engine
        self._check = check
        self._truncation = truncation
        self._go = asyncio.Event()
        self._prepared: asyncio.Future[PreparedGeneration] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            prepared = await self._prepare()
        except Exception as exc:
            self._prepared.set_exception(exc)
            return
        self._prepared.set_result(prepared)
        await self._go.wait()
        events = self._engine.generate(prepared)
        try:
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    self._queue.put_nowait(event)
        except Exception as exc:
            self._queue.put_nowait(_Failed(exc))
            return
        self._queue.put_nowait(_END)

    async def _prepare(self) -> PreparedGeneration:
        """The request prepared and checked. With a ``truncation`` (the session's
        ``truncation`` other than ``disabled``), a conversation that overflows loses its
        oldest turns (whole turns, from a user's turn on; the instructions stay): the
        fewest that leave it within the truncation's retention, found by bisection
        (about log2(turns) preparations); failing that, the most that may be cut."""
        truncation = self._truncation
        if truncation is None:
            return await self._checked(self.request)
        cuts = turn_cuts(self.request.turns)
        instructions = await self._instruction_tokens(truncation)
        try:
            prepared = await self._checked(self.request)
        except ContextLengthExceededError as exc:
            if not cuts:
                raise
            too_long: ContextLengthExceededError | None = exc
        else:
            if not cuts or not truncation.overflows(prepared.context_tokens, instructions):
                return prepared
            too_long = None
        head = self.request.turns[: _first_spoken(self.request.turns)]
        fitted: tuple[int, PreparedGeneration] | None = None
        last: PreparedGeneration | None = None  # the last cut's, when it fits the window
        low, high = 0, len(cuts) - 1  # the first cut that is kept lies in [low, high + 1]
        while low <= high:
            middle = (low + high) // 2
            try:
                prepared = await self._checked(self._cut(head, cuts[middle]))
            except ContextLengthExceededError as exc:
                too_long = exc
                low = middle + 1
                continue
            if middle == len(cuts) - 1:
                last = prepared
            if truncation.kept(prepared.context_tokens, instructions):
                fitted = (cuts[middle], prepared)
                high = middle - 1
            else:
                low = middle + 1
        if fitted is None:  # even the last cut holds more than the retention asks
            if last is None:  # (the bisection tried the last cut; it did not fit)
                assert too_long is not None
                raise too_long
            fitted = (cuts[-1], last)
        cut, prepared = fitted
        self.dropped_user_turns = sum(
            turn.role == "user" for turn in self.request.turns[len(head) : cut]
        )
        self.request = prepared.request
        return prepared

    def _cut(self, head: tuple[Turn, ...], cut: int) -> GenerationRequest:
        return replace(self.request, turns=head + self.request.turns[cut:])

    async def _instruction_tokens(self, truncation: Truncation) -> int:
        """The tokens of the instructions alone (only a ``post_instructions`` limit
        needs them): the prompt of the instructions and the last turn, less that turn."""
        if truncation.post_instructions_tokens is None:
            return 0
        turns = self.request.turns
        head = turns[: _first_spoken(turns)]
        if not head or len(turns) == len(head):
            return 0
        try:
            with_head = await self._engine.prepare(replace(self.request, turns=(*head, turns[-1])))
            alone = await self._engine.prepare(replace(self.request, turns=(turns[-1],)))
        except OmnivoxError:  # the last turn alone is no request: count the instructions as 0
            return 0
        return max(0, with_head.context_tokens - alone.context_tokens)

    async def _checked(self, request: GenerationRequest) -> PreparedGeneration:
        prepared = await self._engine.prepare(request)
        self._check(prepared)
        return prepared

    async def prepared(self) -> PreparedGeneration:
        """The prepared generation; raises what ``prepare`` (or the check) raised."""
        return await asyncio.shield(self._prepared)

    async def was_prepared(self) -> bool:
        """Wait until ``prepare`` has ended, however it ended; whether it succeeded."""
        await asyncio.wait({self._prepared})
        return not self._prepared.cancelled() and self._prepared.exception() is None

    def release(self) -> None:
        """Let the generation begin (it is prepared first in any case)."""
        self._go.set()

    async def events(self) -> AsyncIterator[EngineEvent]:
        self.release()
        while True:
            event = await self._queue.get()
            if event is _END:
                return
            if isinstance(event, _Failed):
                raise event.error
            yield event

    async def cancel(self) -> None:
        """Stop the engine's work; whatever it made is dropped."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._prepared.done() and not self._prepared.cancelled():
            self._prepared.exception()  # retrieved: a refusal nobody waited for is no error
        elif not self._prepared.done():
            self._prepared.cancel()


def _first_spoken(turns: tuple[Turn, ...]) -> int:
    """Where the conversation begins, after the leading instructions."""
    return next((i for i, turn in enumerate(turns) if turn.role != "system"), len(turns))


def turn_cuts(turns: tuple[Turn, ...]) -> list[int]:
    """Where the conversation may be cut, oldest first: each user turn after its first
    (a cut there drops whole exchanges, never a call without its output)."""
    start = _first_spoken(turns)
    return [i for i in range(start + 1, len(turns)) if turns[i].role == "user"]


@dataclass(slots=True)
class _Message:
    item: Item
    output_index: int
    text: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Call:
    item: Item
    output_index: int
    arguments: list[str] = field(default_factory=list)


class ResponseWriter:
    """The events of one response, from ``response.created`` to its output items' ``done``."""

    def __init__(
        self,
        send: Send,
        shown: dict[str, Any],
        *,
        speak: bool,
        output: OutputAudio,
        conversation: list[Item] | None,
        usage: UsageCounter,
    ) -> None:
        self._send = send
        self.shown = shown
        self.response_id = str(shown["id"])
        self.speak = speak
        self._output = output
        self._conversation = conversation
        self.usage = usage
        self._count = OutputCount(usage)
        self._message: _Message | None = None
        self._calls: dict[int, _Call] = {}
        self.items: list[Item] = []  # in output order
        self.status = "completed"
        self.details: dict[str, Any] | None = None

    async def created(self) -> None:
        await self._send(
            {
                "type": "response.created",
                "response": {
                    **self.shown,
                    "status": "in_progress",
                    "status_details": None,
                    "output": [],
                    "usage": None,
                },
            }
        )

    @property
    def generating(self) -> list[Item]:
        """The items still being written."""
        open_items = [call.item for call in self._calls.values()]
        if self._message is not None:
            open_items.append(self._message.item)
        return open_items

    async def event(self, event: EngineEvent) -> None:
        if isinstance(event, TextDelta):
            message = await self._open_message()
            self._count.text(len(event.logprobs) or 1)
            message.text.append(event.text)
            kind = (
                "response.output_audio_transcript.delta"
                if self.speak
                else ("response.output_text.delta")
            )
            await self._send({"type": kind, **self._at(message), "delta": event.text})
        elif isinstance(event, AudioDelta):
            message = await self._open_message()
            self._count.audio(len(event.pcm_s16le))
            track = message.item.audio
            assert track is not None
            if event.spoken:
                track.units.append((track.n_bytes, event.spoken))
            track.n_bytes += len(event.pcm_s16le)
            await self._audio(message, self._output.encode(event.pcm_s16le))
        elif isinstance(event, ToolCallDelta):
            call = self._calls.get(event.index)
            if call is None:
                call = await self._open_call(event)
            call.arguments.append(event.arguments)
            if event.arguments:
                await self._send(
                    {
                        "type": "response.function_call_arguments.delta",
                        "response_id": self.response_id,
                        "item_id": call.item.id,
                        "output_index": call.output_index,
                        "call_id": call.item.wire["call_id"],
                        "delta": event.arguments,
                    }
                )
        elif isinstance(event, Finished):
            self._count.finished(event.completion_text_tokens)
            if event.prompt_text_tokens is not None:
                self.usage.prompt_text_tokens = event.prompt_text_tokens
            if event.reason == "length":
                self.status = "incomplete"
                self.details = {"type": "incomplete", "reason": "max_output_tokens"}

    def ended(self, status: str, details: dict[str, Any] | None) -> None:
        self.status, self.details = status, details

    async def finish(self) -> list[Item]:
        """Close every item still open (in output order); the response's output items."""
        if not self.items:
            await self._open_message()
        item_status = "completed" if self.status == "completed" else "incomplete"
        if self._message is not None:
            await self._close_message(self._message, item_status)
        for call in sorted(self._calls.values(), key=lambda c: c.output_index):
            await self._close_call(call, item_status)
        self._calls.clear()
        return self.items

    # ---- items -----------------------------------------------------------------------

    def _at(self, message: _Message) -> dict[str, Any]:
        return {
            "response_id": self.response_id,
            "item_id": message.item.id,
            "output_index": message.output_index,
            "content_index": 0,
        }

    async def _added(self, item: Item) -> int:
        output_index = len(self.items)
        self.items.append(item)
        await self._send(
            {
                "type": "response.output_item.added",
                "response_id": self.response_id,
                "output_index": output_index,
                "item": item.wire,
            }
        )
        if self._conversation is not None:
            previous = self._conversation[-1].id if self._conversation else None
            self._conversation.append(item)
            await self._send(
                {"type": "conversation.item.added", "previous_item_id": previous, "item": item.wire}
            )
        return output_index

    async def _done(self, item: Item, output_index: int) -> None:
        await self._send(
            {
                "type": "response.output_item.done",
                "response_id": self.response_id,
                "output_index": output_index,
                "item": item.wire,
            }
        )
        if self._conversation is not None and item in self._conversation:
            at = self._conversation.index(item)
            previous = self._conversation[at - 1].id if at > 0 else None
            await self._send(
                {"type": "conversation.item.done", "previous_item_id": previous, "item": item.wire}
            )

    async def _open_message(self) -> _Message:
        if self._message is not None:
            return self._message
        item = Item(
            {
                "id": new_id("item_"),
                "object": "realtime.item",
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            },
            audio=AudioTrack() if self.speak else None,
        )
        message = _Message(item, await self._added(item))
        self._message = message
        part = {"type": "audio", "transcript": ""} if self.speak else {"type": "text", "text": ""}
        await self._send({"type": "response.content_part.added", **self._at(message), "part": part})
        return message

    async def _audio(self, message: _Message, data: bytes) -> None:
        if data:
            await self._send(
                {
                    "type": "response.output_audio.delta",
                    **self._at(message),
                    "delta": base64.b64encode(data).decode(),
                }
            )

    async def _close_message(self, message: _Message, status: str) -> None:
        self._message = None
        said = "".join(message.text)
        at = self._at(message)
        if self.speak:
            await self._audio(message, self._output.flush())
            await self._send({"type": "response.output_audio.done", **at})
            await self._send(
                {"type": "response.output_audio_transcript.done", **at, "transcript": said}
            )
            part: dict[str, Any] = {"type": "audio", "transcript": said}
            content: dict[str, Any] = {"type": "output_audio", "transcript": said}
        else:
            await self._send({"type": "response.output_text.done", **at, "text": said})
            part = {"type": "text", "text": said}
            content = {"type": "output_text", "text": said}
        await self._send({"type": "response.content_part.done", **at, "part": part})
        item = message.item
        item.wire = {**item.wire, "status": status, "content": [content]}
        item.parts = (said,)
        if item.cut_bytes is not None:  # truncated while it was being spoken
            truncate(item, item.cut_bytes)
        await self._done(item, message.output_index)

    async def _open_call(self, event: ToolCallDelta) -> _Call:
        if self._message is not None:  # the words before a call end where it begins
            await self._close_message(self._message, "completed")
        item = Item(
            {
                "id": new_id("item_"),
                "object": "realtime.item",
                "type": "function_call",
                "status": "in_progress",
                "call_id": event.call_id or new_id("call_"),
                "name": event.name or "",
                "arguments": "",
            }
        )
        call = _Call(item, await self._added(item))
        self._calls[event.index] = call
        return call

    async def _close_call(self, call: _Call, status: str) -> None:
        wire = call.item.wire
        arguments = "".join(call.arguments)
        await self._send(
            {
                "type": "response.function_call_arguments.done",
                "response_id": self.response_id,
                "item_id": call.item.id,
                "output_index": call.output_index,
                "call_id": wire["call_id"],
                "name": wire["name"],
                "arguments": arguments,
            }
        )
        call.item.wire = {**wire, "status": status, "arguments": arguments}
        await self._done(call.item, call.output_index)


def usage_json(usage: UsageCounter) -> dict[str, Any]:
    input_tokens = usage.prompt_text_tokens + usage.prompt_audio_tokens
    output_tokens = usage.completion_text_tokens + usage.completion_audio_tokens
    return {
        "total_tokens": input_tokens + output_tokens,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "input_token_details": {
            "text_tokens": usage.prompt_text_tokens,
            "audio_tokens": usage.prompt_audio_tokens,
            "image_tokens": 0,
            "cached_tokens": 0,
            "cached_tokens_details": {"text_tokens": 0, "audio_tokens": 0, "image_tokens": 0},
        },
        "output_token_details": {
            "text_tokens": usage.completion_text_tokens,
            "audio_tokens": usage.completion_audio_tokens,
        },
    }


def with_instructions(turns: list[Turn], instructions: str) -> tuple[Turn, ...]:
    return ((Turn("system", (instructions,)),) if instructions else ()) + tuple(turns)
