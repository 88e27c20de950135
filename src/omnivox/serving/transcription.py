"""``POST /v1/audio/transcriptions`` and ``/translations``: speech written down.

``TranscriptionService.start`` checks what can fail before the first byte (the
model, the engine, the form's rules) and decodes the upload off the event loop
(any format FFmpeg reads, up to the server's longest input). It returns a
``TranscriptionRun`` whose ``events`` are the engine's: the language, each
segment as it is recognised, and the end. ``render`` makes the whole answer in
the requested ``response_format`` (``json``, ``text``, ``srt``, ``vtt``,
``verbose_json``); ``sse_chunks`` streams ``transcript.text.delta`` events, one
per segment, then ``transcript.text.done``.

Usage: the audio at 10 tokens per second plus the prompt's text tokens in, the
transcript's text tokens out (the recogniser's own tokens). ``whisper-1``
answers report the duration instead, as OpenAI bills that model; the ledger
counts tokens for every model. The finalizers (the ledger) run before the last
byte leaves.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from omnivox.audio import INPUT_SAMPLE_RATE, decode_audio
from omnivox.engines.base import (
    AudioClip,
    Engine,
    TranscribingEngine,
    TranscriptionRequest,
    TranscriptionTask,
)
from omnivox.engines.events import (
    TranscriptionEvent,
    TranscriptionFinished,
    TranscriptionStarted,
    TranscriptSegment,
)
from omnivox.engines.languages import language_name
from omnivox.errors import (
    AudioTooLongError,
    InvalidRequestError,
    InvalidValueError,
    ServerError,
    UnsupportedAudioFormatError,
)
from omnivox.protocol.audio import (
    CreateTranscriptionForm,
    CreateTranslationForm,
    DurationUsage,
    Logprob,
    Segment,
    Transcription,
    TranscriptionUsage,
    TranscriptTextDelta,
    TranscriptTextDone,
    UsageTokensDetails,
    VerboseTranscription,
    Word,
)
from omnivox.serving import sse
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.inputs import InputLimits
from omnivox.serving.runs import MeteredRun, ending
from omnivox.serving.usage import (
    COMPRESSED_AUDIO_BYTES_PER_S,
    INPUT_AUDIO_TOKENS_PER_S,
    UsageCounter,
)

DURATION_BILLED_MODELS = frozenset({"whisper-1"})
CORRUPT_MESSAGE = "Audio file might be corrupted or unsupported"
MEDIA_TYPES = {
    "json": "application/json",
    "verbose_json": "application/json",
    "text": "text/plain; charset=utf-8",
    "srt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
}


@dataclass(slots=True)
class TranscriptionRun(MeteredRun):
    task: TranscriptionTask
    response_format: str
    duration_usage: bool
    words: bool = False  # verbose_json lists the words
    segments: bool = True  # verbose_json lists the segments
    logprobs: bool = False
    events: AsyncIterator[TranscriptionEvent] = field(init=False)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.response_format]


def transcription_engine(engine: Engine, task: TranscriptionTask) -> TranscribingEngine:
    """The engine as a recogniser, or 400 when it can not do ``task``."""
    if (
        "transcription" in engine.capabilities
        and isinstance(engine, TranscribingEngine)
        and (task == "transcribe" or engine.translates)
    ):
        return engine
    endpoint = "transcriptions" if task == "transcribe" else "translations"
    raise InvalidRequestError(
        f"The {engine.name} engine can not {task} speech; /v1/audio/{endpoint} is not "
        "available on this server.",
        param="model",
        code="unsupported_endpoint",
    )


def estimate_transcription_tokens(n_file_bytes: int) -> int:
    """The input as rate limits estimate it before decoding: compressed speech at 32 kbit/s."""
    return math.ceil(n_file_bytes / COMPRESSED_AUDIO_BYTES_PER_S * INPUT_AUDIO_TOKENS_PER_S)


class TranscriptionService:
    def __init__(self, engine: Engine, catalog: ModelCatalog, limits: InputLimits) -> None:
        self.engine = engine
        self.catalog = catalog
        self.limits = limits

    async def start(
        self,
        form: CreateTranscriptionForm | CreateTranslationForm,
        audio: bytes,
        task: TranscriptionTask,
        *,
        background: bool = False,
    ) -> TranscriptionRun:
        """``background``: nobody waits on it (a batch's line; see the request's field)."""
        self.catalog.get(form.model, "transcription")
        engine = transcription_engine(self.engine, task)
        words = segments = logprobs = False
        language = None
        if isinstance(form, CreateTranscriptionForm):
            _check_form(form)
            words = "word" in form.timestamp_granularities
            segments = "segment" in form.timestamp_granularities
            logprobs = "logprobs" in form.include
            language = form.language.lower() if form.language else None
        clip = await _decode(audio, self.limits.max_input_audio_s)
        request = TranscriptionRequest(
            clip=clip,
            task=task,
            language=language,
            prompt=form.prompt or None,
            temperature=form.temperature,
            word_timestamps=words or logprobs,
            background=background,
        )
        audio_tokens = math.ceil(clip.duration_s * INPUT_AUDIO_TOKENS_PER_S)
        run = TranscriptionRun(
            None,
            UsageCounter(0, audio_tokens),
            task=task,
            response_format=form.response_format,
            duration_usage=form.model in DURATION_BILLED_MODELS,
            words=words,
            segments=segments,
            logprobs=logprobs,
        )
        run.events = _metered(run, engine.transcribe(request))
        return run


def _check_form(form: CreateTranscriptionForm) -> None:
    if form.timestamp_granularities != ["segment"] and form.response_format != "verbose_json":
        raise InvalidValueError(
            "Invalid value: 'timestamp_granularities[]' needs response_format "
            f"'verbose_json', not '{form.response_format}'.",
            param="timestamp_granularities",
        )
    if form.include and form.response_format != "json":
        raise InvalidValueError(
            "Invalid value: 'include[]' logprobs needs response_format 'json', "
            f"not '{form.response_format}'.",
            param="include",
        )


async def _decode(data: bytes, max_input_audio_s: float) -> AudioClip:
    def decode() -> AudioClip:
        samples = decode_audio(
            data, sample_rate=INPUT_SAMPLE_RATE, max_duration_s=max_input_audio_s
        )
        return AudioClip(samples, INPUT_SAMPLE_RATE, hashlib.sha256(data).hexdigest())

    try:
        return await asyncio.to_thread(decode)
    except UnsupportedAudioFormatError:
        raise InvalidValueError(CORRUPT_MESSAGE, param="file") from None
    except AudioTooLongError as exc:
        raise AudioTooLongError(exc.message, param="file") from None


async def _metered(
    run: TranscriptionRun, events: AsyncIterator[TranscriptionEvent]
) -> AsyncIterator[TranscriptionEvent]:
    """The engine's events with the usage counted; the finalizers run before the last."""
    async with ending(run) as end:
        async for event in events:
            if isinstance(event, TranscriptSegment):
                run.usage.completion_text_tokens += len(event.tokens)
            elif isinstance(event, TranscriptionFinished):
                run.usage.prompt_text_tokens = event.prompt_text_tokens
                run.usage.completion_text_tokens = event.output_text_tokens
                await end.completed()
            yield event
            if run.checkpoints:
                await run.checkpoint()
        if end.outcome != "completed":
            raise ServerError("the engine ended the transcription without finishing it")


# ---- the answer, whole -----------------------------------------------------------------------


@dataclass(slots=True)
class _Heard:
    language: str = ""
    duration_s: float = 0.0
    segments: list[TranscriptSegment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return join_segments(self.segments)


async def render(run: TranscriptionRun) -> str:
    """The whole answer in the run's ``response_format``."""
    heard = _Heard()
    async for event in run.events:
        if isinstance(event, TranscriptionStarted):
            heard.language, heard.duration_s = event.language, event.duration_s
        elif isinstance(event, TranscriptSegment):
            heard.segments.append(event)
    fmt = run.response_format
    if fmt == "text":
        return heard.text + "\n"
    if fmt == "srt":
        return subtitles(heard.segments, vtt=False)
    if fmt == "vtt":
        return subtitles(heard.segments, vtt=True)
    if fmt == "verbose_json":
        return _verbose(run, heard).dump()
    answer = Transcription(text=heard.text, usage=_usage(run, heard.duration_s))
    if run.logprobs:
        answer.logprobs = word_logprobs(heard.segments)
    return answer.dump()


def _verbose(run: TranscriptionRun, heard: _Heard) -> VerboseTranscription:
    answer = VerboseTranscription(
        task=run.task,
        language=language_name(heard.language),
        duration=round(heard.duration_s, 3),
        text=heard.text,
        usage=DurationUsage(seconds=math.ceil(heard.duration_s)),
    )
    if run.segments or run.task == "translate":
        answer.segments = [_segment(s) for s in heard.segments]
    if run.words:
        answer.words = [
            Word(word=w.word.strip(), start=round(w.start_s, 3), end=round(w.end_s, 3))
            for s in heard.segments
            for w in s.words
        ]
    return answer


def _segment(s: TranscriptSegment) -> Segment:
    return Segment(
        id=s.index,
        seek=s.seek,
        start=round(s.start_s, 3),
        end=round(s.end_s, 3),
        text=s.text,
        tokens=list(s.tokens),
        temperature=s.temperature,
        avg_logprob=s.avg_logprob,
        compression_ratio=s.compression_ratio,
        no_speech_prob=s.no_speech_prob,
    )


def _usage(run: TranscriptionRun, duration_s: float) -> TranscriptionUsage | DurationUsage:
    if run.duration_usage:
        return DurationUsage(seconds=math.ceil(duration_s))
    return _token_usage(run)


def _token_usage(run: TranscriptionRun) -> TranscriptionUsage:
    u = run.usage
    input_tokens = u.prompt_text_tokens + u.prompt_audio_tokens
    return TranscriptionUsage(
        input_tokens=input_tokens,
        input_token_details=UsageTokensDetails(
            text_tokens=u.prompt_text_tokens, audio_tokens=u.prompt_audio_tokens
        ),
        output_tokens=u.completion_text_tokens,
        total_tokens=input_tokens + u.completion_text_tokens,
    )


def join_segments(segments: list[TranscriptSegment]) -> str:
    return " ".join(s.text for s in segments if s.text)


def word_logprobs(segments: list[TranscriptSegment]) -> list[Logprob]:
    """Each word with the log of the recogniser's probability for it."""
    return [
        Logprob(
            token=w.word,
            logprob=math.log(max(w.probability, 1e-12)),
            bytes=list(w.word.encode()),
        )
        for s in segments
        for w in s.words
    ]


def subtitles(segments: list[TranscriptSegment], *, vtt: bool) -> str:
    """SubRip (numbered cues, ``00:00:01,000``) or WebVTT (a header, ``00:00:01.000``)."""
    cues = []
    for number, s in enumerate((s for s in segments if s.text), start=1):
        span = f"{_timestamp(s.start_s, vtt)} --> {_timestamp(s.end_s, vtt)}"
        cues.append(f"{span}\n{s.text}\n" if vtt else f"{number}\n{span}\n{s.text}\n")
    body = "\n".join(cues)
    return f"WEBVTT\n\n{body}" if vtt else body


def _timestamp(seconds: float, vtt: bool) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{'.' if vtt else ','}{ms:03d}"


# ---- the answer, streamed --------------------------------------------------------------------


async def sse_chunks(run: TranscriptionRun) -> AsyncIterator[bytes]:
    """One ``transcript.text.delta`` per segment, then ``transcript.text.done`` and
    ``[DONE]``; an error after the first byte is an error event that ends the stream."""
    segments: list[TranscriptSegment] = []
    async for event in sse.until_error(run.events):
        if isinstance(event, sse.StreamFailed):
            yield event.event  # the stream ends with it
            return
        if isinstance(event, TranscriptSegment) and event.text:
            delta = TranscriptTextDelta(delta=(" " if segments else "") + event.text)
            if run.logprobs:
                delta.logprobs = word_logprobs([event])
            segments.append(event)
            yield sse.data_event(delta.dump())
    done = TranscriptTextDone(text=join_segments(segments), usage=_token_usage(run))
    if run.logprobs:
        done.logprobs = word_logprobs(segments)
    yield sse.data_event(done.dump()) + sse.DONE
