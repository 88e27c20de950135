"""``POST /v1/audio/speech``: text read aloud, the encoded bytes streamed as they are made.

``SpeechService.start`` checks what can fail before the first byte (the model
name, the voice, whether the engine reads aloud) and returns a ``SpeechRun``
whose ``chunks`` are the answer's bytes in the requested format, each as soon
as the engine's speech has been encoded: the first leave long before a long
input is read to its end. ``sse_chunks`` frames the same bytes as OpenAI's
``speech.audio.delta`` events, then ``speech.audio.done`` with the usage.

Usage: the input's text tokens (the engine's tokenizer) and the speech made as
audio tokens at 20 per second, counted as the audio is made, so a reading cut
short is billed for what was read. The run's finalizers (the ledger) run before
the last bytes leave.

``instructions`` are accepted and not followed: the voices here have one
delivery each (see the engine's voice table); ``speed`` changes the pace.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from omnivox.audio.encode import MIME_TYPES, make_stream_encoder
from omnivox.engines.base import Engine, SpeakingEngine, SpeechRequest
from omnivox.engines.events import AudioDelta, SpeechEvent, SpeechFinished
from omnivox.errors import InvalidRequestError
from omnivox.protocol.audio import (
    CreateSpeechRequest,
    SpeechAudioDelta,
    SpeechAudioDone,
    SpeechUsage,
)
from omnivox.serving import sse
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.inputs import voice_name
from omnivox.serving.runs import MeteredRun, ending
from omnivox.serving.usage import CHARS_PER_TOKEN, OutputCount, UsageCounter

# The wire's names for the output formats -> the encoders' names.
ENCODER_NAMES = {
    "mp3": "mp3",
    "opus": "opus",
    "aac": "aac",
    "flac": "flac",
    "wav": "wav",
    "pcm": "pcm16",
}


def speech_engine(engine: Engine) -> SpeakingEngine:
    """The engine as a reader of text, or 400 when it can not read aloud."""
    if "text_to_speech" in engine.capabilities and isinstance(engine, SpeakingEngine):
        return engine
    raise InvalidRequestError(
        f"The {engine.name} engine can not read text aloud; /v1/audio/speech is not "
        "available on this server.",
        param="model",
        code="unsupported_endpoint",
    )


def estimate_speech_tokens(req: CreateSpeechRequest) -> int:
    """The input's tokens as rate limits estimate them before the engine counts them."""
    return -(-len(req.input) // CHARS_PER_TOKEN)


@dataclass(slots=True)
class SpeechRun(MeteredRun):
    media_type: str
    chunks: AsyncIterator[bytes] = field(init=False)


class SpeechService:
    def __init__(self, engine: Engine, catalog: ModelCatalog) -> None:
        self.engine = engine
        self.catalog = catalog

    async def start(self, req: CreateSpeechRequest, *, background: bool = False) -> SpeechRun:
        """Returns once the first bytes are made: a reading that fails before any sound
        (the voice's server is down, say) is an ordinary HTTP error, not a cut stream.
        ``background``: nobody waits on it (a batch's line; ``SpeechRequest.background``)."""
        self.catalog.get(req.model, "speech")
        engine = speech_engine(self.engine)
        request = SpeechRequest(
            text=req.input,
            voice=voice_name(req.voice, "voice"),
            speed=req.speed,
            instructions=req.instructions,
            background=background,
        )
        fmt = ENCODER_NAMES[req.response_format]
        media_type = sse.SSE_MEDIA_TYPE if req.stream_format == "sse" else MIME_TYPES[fmt]
        run = SpeechRun(None, UsageCounter(0, 0), media_type=media_type)
        run.chunks = await _primed(_encoded(run, engine.speak(request), fmt))
        return run


async def _encoded(
    run: SpeechRun, events: AsyncIterator[SpeechEvent], fmt: str
) -> AsyncIterator[bytes]:
    """The engine's speech encoded as it comes; the finalizers run before the last bytes."""
    encoder = make_stream_encoder(fmt)
    count = OutputCount(run.usage)
    async with ending(run) as end:
        async for event in events:
            if isinstance(event, AudioDelta):
                count.audio(len(event.pcm_s16le))
                data = encoder.encode(event.pcm_s16le)
                if data:
                    yield data
                if run.checkpoints:
                    await run.checkpoint()
            elif isinstance(event, SpeechFinished):
                run.usage.prompt_text_tokens = event.input_text_tokens
        tail = encoder.flush()
        await end.completed()
        if tail:
            yield tail


async def _primed(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``chunks`` with its first item already made (errors before it raise here)."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        return _nothing()
    return _then(first, chunks)


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # an async generator that yields nothing


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(rest):  # type: ignore[type-var]
        yield first
        async for chunk in rest:
            yield chunk


async def sse_chunks(run: SpeechRun) -> AsyncIterator[bytes]:
    """The reading as ``speech.audio.delta`` events, ``speech.audio.done``, ``[DONE]``;
    an error after the first byte is an error event that ends the stream."""
    async for data in sse.until_error(run.chunks):
        if isinstance(data, sse.StreamFailed):
            yield data.event  # the stream ends with it
            return
        delta = SpeechAudioDelta(audio=base64.b64encode(data).decode("ascii"))
        yield sse.data_event(delta.dump())
    usage = run.usage
    input_tokens = usage.prompt_text_tokens
    output_tokens = usage.completion_audio_tokens
    done = SpeechAudioDone(
        usage=SpeechUsage(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
        )
    )
    yield sse.data_event(done.dump()) + sse.DONE
