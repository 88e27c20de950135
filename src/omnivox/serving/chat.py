"""One chat completion from request to a stream of output events.

``ChatService.start`` does everything that can fail before the first byte
(model name, request rules, audio decoding, audio ids, the engine's prepare,
the context window) so such failures are ordinary HTTP errors. It returns a
``CompletionRun`` whose ``events`` are the one stream both answers are made
from: ``sse.render`` writes it as chunks, ``fold.fold`` into one completion.

Tool calls: a call the engine names gets an id (``call_`` + 24 characters)
unless the engine gave one; a choice that made a call and ended normally
finishes with "tool_calls" (with the legacy ``functions``: "function_call",
and ``sse``/``fold`` write ``function_call`` instead of ``tool_calls``); one
cut by the token limit keeps "length". A spoken choice that only called tools
(no words, no sound) has no audio at all: no id, no expiry, nothing stored;
words spoken before a call are kept as the turn's audio as usual.

Usage is counted as events arrive (``usage.OutputCount``), so a run that ends
early (cancelled, failed) reports what was made. While the engine generates,
``checkpoints`` hear the usage so far at most once per
``CHECKPOINT_INTERVAL_S`` (the ledger keeps a running row, so a crash leaves
a row with the tokens made until about then).

A spoken choice's ``AudioDone`` (the audio ``expires_at`` of a stream, and so
the whole folded answer) is emitted only once the audio store has committed
the answer: an audio id the client is told is complete survives a crash of
this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace

from omnivox import ids
from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.chunk import PIECE_ALIGN_BYTES
from omnivox.engines.base import Engine, PreparedGeneration, check_context_window
from omnivox.engines.events import AudioDelta, Finished, TextDelta, ToolCallDelta
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.responses import FinishReason
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.inputs import (
    InputLimits,
    build_generation_request,
    check_request_rules,
)
from omnivox.serving.outputs import (
    AudioDone,
    AudioStarted,
    ChoiceAudio,
    ChoiceFinish,
    ChoiceText,
    ChoiceToolCall,
    OutputEvent,
    UsageReady,
)
from omnivox.serving.runs import MeteredRun, ending
from omnivox.serving.usage import OutputCount, UsageCounter, input_audio_tokens
from omnivox.store.audio import AudioStore, StoredAudio

SERVICE_TIER = "default"


@dataclass(slots=True)
class CompletionRun(MeteredRun):
    """One completion in flight (see ``runs.MeteredRun`` for its finalizers and
    checkpoints); ``events`` is the one stream both answers are made from."""

    created: int
    model: str
    system_fingerprint: str
    service_tier: str
    n_choices: int
    audio_format: str | None
    include_usage: bool
    legacy_functions: bool = False
    events: AsyncIterator[OutputEvent] = field(init=False)


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    audio_ttl_s: int
    limits: InputLimits


class ChatService:
    def __init__(
        self,
        engine: Engine,
        store: AudioStore,
        catalog: ModelCatalog,
        options: ServiceOptions,
        system_fingerprint: str,
    ) -> None:
        self.engine = engine
        self.store = store
        self.catalog = catalog
        self.options = options
        self.system_fingerprint = system_fingerprint

    async def start(
        self, req: CreateChatCompletionRequest, *, background: bool = False
    ) -> CompletionRun:
        """``background``: nobody waits on the answer (a batch's line); it yields the
        engine's compute to every other request (``GenerationRequest.background``)."""
        model = self.catalog.resolve(req.model)
        check_request_rules(req, self.engine)
        generation, audio_s = await build_generation_request(req, self.store, self.options.limits)
        if background:
            generation = replace(generation, background=True)
        prepared = await self.engine.prepare(generation)
        check_context_window(
            self.engine.context_window_tokens,
            prepared.context_tokens,
            prepared.request.sampling.max_output_tokens,
        )
        usage = UsageCounter(
            prompt_text_tokens=prepared.prompt_text_tokens,
            prompt_audio_tokens=input_audio_tokens(audio_s.user_s, audio_s.assistant_s),
        )
        created = int(time.time())
        n_choices = req.n or 1
        audio_format = req.audio.format if req.wants_audio and req.audio else None
        run = CompletionRun(
            completion_id=ids.completion_id(),
            created=created,
            model=model,
            system_fingerprint=self.system_fingerprint,
            service_tier=SERVICE_TIER,
            n_choices=n_choices,
            audio_format=audio_format,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            usage=usage,
            legacy_functions=bool(req.functions) and not req.tools,
        )
        run.events = self._events(run, prepared, audio_format is not None)
        return run

    async def _events(
        self, run: CompletionRun, prepared: PreparedGeneration, speak: bool
    ) -> AsyncIterator[OutputEvent]:
        async with ending(run) as end:
            if run.n_choices == 1:
                async for event in self._choice(0, prepared, speak, run):
                    yield event
            else:
                seed = prepared.request.sampling.seed
                streams = [
                    self._choice(i, _with_seed(prepared, seed, i), speak, run)
                    for i in range(run.n_choices)
                ]
                async for event in _merge(streams):
                    yield event
            await end.completed()
            yield UsageReady(run.usage.to_wire())

    async def _choice(
        self, index: int, prepared: PreparedGeneration, speak: bool, run: CompletionRun
    ) -> AsyncIterator[OutputEvent]:
        created = run.created
        count = OutputCount(run.usage)
        transcript: list[str] = []
        pcm: list[bytes] = []
        made_tool_call = False
        audio_id = ids.audio_id() if speak else ""
        if speak:
            yield AudioStarted(index, audio_id)
        async for event in self.engine.generate(prepared):
            if isinstance(event, TextDelta):
                count.text(len(event.logprobs) or 1)
                transcript.append(event.text)
                yield ChoiceText(index, event.text, event.logprobs)
            elif isinstance(event, AudioDelta):
                count.audio(len(event.pcm_s16le))
                pcm.append(event.pcm_s16le)
                yield ChoiceAudio(index, event.pcm_s16le)
            elif isinstance(event, ToolCallDelta):
                if event.arguments:
                    count.text(1)
                made_tool_call = True
                call_id = event.call_id or (ids.tool_call_id() if event.name else None)
                yield ChoiceToolCall(index, event.index, call_id, event.name, event.arguments)
            elif isinstance(event, Finished):
                count.finished(event.completion_text_tokens)
                if event.prompt_text_tokens is not None:
                    run.usage.prompt_text_tokens = event.prompt_text_tokens
                only_calls = made_tool_call and not pcm and not "".join(transcript)
                if speak and not only_calls:
                    tail = aligning_silence(sum(map(len, pcm)))
                    if tail:
                        count.audio(len(tail))
                        pcm.append(tail)
                        yield ChoiceAudio(index, tail)
                    done = AudioDone(index, audio_id, created + self.options.audio_ttl_s)
                    await self._store_audio(done, "".join(transcript), b"".join(pcm))
                    yield done
                yield ChoiceFinish(index, _finish_reason(event, made_tool_call, run))
            if run.checkpoints:
                await run.checkpoint()

    async def _store_audio(self, done: AudioDone, transcript: str, pcm: bytes) -> None:
        """Returns once the answer is committed: only then may its id be given as complete."""
        stored = StoredAudio(done.audio_id, transcript, pcm, OUTPUT_SAMPLE_RATE, done.expires_at)
        # Awaited off the event loop: the store's writer thread commits it (group commit
        # with the answers that arrive meanwhile) and completes the future.
        await asyncio.wrap_future(self.store.put(stored))


def aligning_silence(n_pcm_bytes: int) -> bytes:
    """The silent samples (at most two) that make an answer a whole number of 6-byte
    pieces: so every streamed ``data`` fragment, the last one too, is a multiple of 6
    bytes and base64 without padding, and the stored, folded and streamed audio agree."""
    return bytes(-n_pcm_bytes % PIECE_ALIGN_BYTES)


def _finish_reason(event: Finished, made_tool_call: bool, run: CompletionRun) -> FinishReason:
    if event.reason == "length" or not (made_tool_call or event.reason == "tool_calls"):
        return event.reason
    return "function_call" if run.legacy_functions else "tool_calls"


def _with_seed(prepared: PreparedGeneration, seed: int | None, index: int) -> PreparedGeneration:
    """Choice ``i`` of ``n`` samples with seed + i, so choices differ yet stay reproducible."""
    if seed is None:
        return prepared
    sampling = prepared.request.sampling.with_seed(seed + index)
    return replace(prepared, request=replace(prepared.request, sampling=sampling))


async def _merge(streams: list[AsyncIterator[OutputEvent]]) -> AsyncIterator[OutputEvent]:
    """Interleave several choice streams as their events arrive."""
    queue: asyncio.Queue[OutputEvent | BaseException | None] = asyncio.Queue(maxsize=64)

    async def pump(stream: AsyncIterator[OutputEvent]) -> None:
        try:
            async for event in stream:
                await queue.put(event)
            await queue.put(None)
        except Exception as exc:
            await queue.put(exc)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
