"""The cascade engine: speech recognition -> text chat model -> speech synthesis.

``prepare`` transcribes the audio of the conversation (once per clip, see
``transcripts``), builds chat messages (``prompt``), renders them with the
model's chat template and counts the tokens. ``generate`` streams the answer:

    chat model thread ── TextDelta ───────────────────────────┐
          │ segmenter cuts units                               ├─> events, in order made
          └─> unit queue ─> synthesis thread ── AudioDelta ───┘

Text deltas never wait for audio; each unit is synthesized as soon as it is cut
while the chat model keeps writing, and its PCM leaves as soon as it is ready.
Every model step (a clip's transcription, a token, a window of synthesis) of
every conversation takes the engine's one ``ComputeSlot`` (``scheduler``): one
step at a time on all the threads, the most urgent first, so that a
conversation still waiting for its first sound goes before answers already
well ahead of their listeners.
Closing or cancelling the event iterator sets a cancel event that both threads
check between tokens and between synthesis windows, and waits for them to end.

Tools and structured output are grammars chosen in ``prepare`` (see
``constraints``: how each ``tool_choice`` is served), so that a schema that can
not be used is a 400 before any work. A call block is the whole answer: there
are no words before it, so a turn that calls a tool is not spoken.

The engine also reads text aloud (``speak``: the same units and synthesis thread,
at the speed asked; Piper takes no delivery instructions) and writes down or
translates uploaded recordings (``transcribe``: ``transcription``, a Whisper pass
over ~28 s of speech per step of the slot, so long files share the CPU too).

Each of the three parts may be on other servers instead (``--asr``, ``--llm``,
``--tts`` given as URLs): ``listening.remote``, ``chat.remote`` and
``speaking.remote`` stand where the embedded models do, and their work takes no
step of the slot. With all three elsewhere, no model is loaded here.

This module wires the parts together; it knows nothing of HTTP or of how each
part computes.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnivox.engines.base import (
    AudioClip,
    Capability,
    GenerationRequest,
    PreparedGeneration,
    SpeechRequest,
    TranscriptionRequest,
    check_context_window,
)
from omnivox.engines.cascade import assets
from omnivox.engines.cascade.chat.constraints import answer_constraints, check_logit_bias, warm_up
from omnivox.engines.cascade.chat.generator import (
    DEFAULT_CONTEXT_TOKENS,
    GenerationEnd,
    Grammar,
    GrammarBranch,
    LlamaGenerator,
    TokenPiece,
)
from omnivox.engines.cascade.chat.model import ChatModel, ChatPrompt, ungated
from omnivox.engines.cascade.chat.prompt import (
    build_messages,
    client_audio_transcripts,
    offers_tools,
)
from omnivox.engines.cascade.chat.remote import RemoteChatModel
from omnivox.engines.cascade.chat.tools import AnswerReader
from omnivox.engines.cascade.listening.listener import Listener
from omnivox.engines.cascade.listening.long_form import known_languages
from omnivox.engines.cascade.listening.recogniser import WhisperRecogniser
from omnivox.engines.cascade.listening.remote import RemoteRecogniser
from omnivox.engines.cascade.listening.transcripts import TranscriptBook
from omnivox.engines.cascade.scheduler import ComputeSlot, Pace, Stage
from omnivox.engines.cascade.speaking.piper_vocoder import PreparedVoice
from omnivox.engines.cascade.speaking.remote import RemoteVoice
from omnivox.engines.cascade.speaking.segmenter import SpeechSegmenter
from omnivox.engines.cascade.speaking.speaker import UnitSpeaker
from omnivox.engines.cascade.speaking.synthesizer import (
    VOICES,
    PiperSynthesizer,
    prepare_piper_voice,
    voice_language,
)
from omnivox.engines.cascade.transcription import transcription_work
from omnivox.engines.events import (
    AudioDelta,
    EngineEvent,
    Finished,
    SpeechEvent,
    SpeechFinished,
    TextDelta,
    ToolCallDelta,
    TranscriptionEvent,
)
from omnivox.engines.upstream import UpstreamPool, is_url
from omnivox.engines.worker import ThreadBridge
from omnivox.errors import (
    InvalidValueError,
    ModelUnavailableError,
    ServerError,
)
from omnivox.heap import release_free_memory, release_free_memory_soon

if TYPE_CHECKING:
    from omnivox.settings import Settings

UNIT_POLL_S = 0.05
# A conversation leaves the slot free between its steps for at most ~0.1 s (its prompt
# built after its transcription): one that let it go longer ago has no step in progress.
IDLE_AFTER_S = 0.25
# The longest step that ``idle`` lets begin: a recognition pass in a 10 s window (0.3-0.5 s),
# the window of a turn begun early unless it is over 9 s long (longer passes eat into the
# scheduler's 1.5 s margin of the answers ahead of their listeners).
SPARE_STEP_S = 0.5
# Four conversations keep their own KV caches while the slot interleaves their tokens.
DEFAULT_LLM_INSTANCES = 4


@dataclass(frozen=True, slots=True)
class CascadePrompt:
    """The engine's payload in a ``PreparedGeneration``: the prompt and its constraints."""

    prompt: ChatPrompt
    audio_tokens: int = 0  # the prompt's tokens that are transcripts of the client's audio
    grammar: Grammar | None = None
    branch: GrammarBranch | None = None
    reads_calls: bool = False
    pace: Pace | None = field(default=None, compare=False)  # its urgency, from arrival on


class CascadeEngine:
    name = "cascade"
    capabilities: frozenset[Capability] = frozenset(
        {"speech", "logprobs", "tools", "response_format", "text_to_speech", "transcription"}
    )
    # The default Whisper (base) is multilingual: it translates into English. An English-only
    # one (--asr base.en) refuses to in ``transcribe``.
    translates = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.context_window_tokens = DEFAULT_CONTEXT_TOKENS
        self._generator: ChatModel | None = None
        self._synthesizer: PiperSynthesizer | RemoteVoice | None = None
        self._transcripts: TranscriptBook | None = None
        self._listener: Listener | None = None
        self.slot = ComputeSlot()

    def model_names(self) -> tuple[str, ...]:
        s = self.settings
        # A part on other servers is named by the model asked of them, never by their URLs.
        return (
            s.asr_model if is_url(s.asr) else s.asr,
            (s.llm_model or "upstream") if is_url(s.llm) else s.llm,
            s.tts_model if is_url(s.tts) else s.tts,
        )

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.to_thread(self._load)

    def _load(self) -> None:
        settings = self.settings
        models_dir = settings.models_dir
        # Find every file first, so that a missing one fails before anything loads; a part
        # given as URLs is on other servers (the pools of ``_load_chat`` and below).
        asr, llm, tts = settings.asr, settings.llm, settings.tts
        whisper_dir = None if is_url(asr) else assets.whisper_files(asr, models_dir)
        gguf_path = None if is_url(llm) else assets.gguf_file(llm, models_dir)
        voice_files = None if is_url(tts) else assets.piper_files(tts, models_dir)
        threads = settings.threads
        voice = None
        if voice_files is not None:
            with _loading("voice", voice_files.model_path, "--tts"):
                # First: rewriting the voice once takes memory the models do not hold yet.
                voice = prepare_piper_voice(voice_files, models_dir, cpu_threads=threads)
            release_free_memory()
        # The conversation is held in the voice's language: telling Whisper so saves its
        # language detection (a second encoder pass per clip). An upstream voice's is unknown.
        language = voice_language(voice_files) if voice_files is not None else None
        recogniser = self._load_recogniser(whisper_dir, language)
        chat = self._load_chat(gguf_path)
        synthesizer = self._load_voice(voice_files, voice)
        self._transcripts = TranscriptBook(recogniser)
        self._listener = Listener(self._transcripts, recogniser)
        self._generator, self._synthesizer = chat, synthesizer
        self.context_window_tokens = chat.context_window_tokens
        release_free_memory()  # what loading and the warm-ups freed

    def _load_recogniser(
        self, whisper_dir: Path | None, language: str | None
    ) -> WhisperRecogniser | RemoteRecogniser:
        """Whisper from ``whisper_dir``, or (None) the upstreams of --asr."""
        settings = self.settings
        if whisper_dir is None:
            return RemoteRecogniser.connect(
                settings.asr,
                upstream_model=settings.asr_model,
                language=language,
                api_key=settings.audio_api_key,
                timeout_s=settings.upstream_timeout_s,
            )
        with _loading("speech recognition model", whisper_dir, "--asr"):
            return WhisperRecogniser(
                whisper_dir,
                cpu_threads=settings.threads,
                num_workers=1,  # one step at a time (the slot): a second worker is idle memory
                language=language,
            )

    def _load_voice(
        self, files: assets.PiperFiles | None, prepared: PreparedVoice | None
    ) -> PiperSynthesizer | RemoteVoice:
        """The Piper voice of ``files``, or (None) the upstreams of --tts."""
        settings = self.settings
        if files is None or prepared is None:
            return RemoteVoice.connect(
                settings.tts,
                upstream_model=settings.tts_model,
                api_key=settings.audio_api_key,
                timeout_s=settings.upstream_timeout_s,
            )
        with _loading("voice", files.model_path, "--tts"):
            return PiperSynthesizer(files, prepared, cpu_threads=settings.threads)

    def _load_chat(self, gguf_path: Path | None) -> ChatModel:
        """The embedded chat model from ``gguf_path``, or (None) the upstreams of --llm."""
        settings = self.settings
        if gguf_path is None:
            from omnivox.engines.cascade.chat.remote import RemoteChatModel

            return RemoteChatModel.connect(
                settings.llm,
                model=settings.llm_model,
                dialect=settings.llm_dialect,
                context=settings.llm_context,
                api_key=settings.llm_api_key,
                timeout_s=settings.upstream_timeout_s,
            )
        with _loading("chat model", gguf_path, "--llm"):
            generator = LlamaGenerator(
                gguf_path,
                n_threads=settings.threads,
                n_ctx=DEFAULT_CONTEXT_TOKENS,
                n_instances=DEFAULT_LLM_INSTANCES,
            )
            warm_up(generator)
        return generator

    async def close(self) -> None:
        generator, self._generator = self._generator, None
        recogniser = self._listener.recogniser if self._listener is not None else None
        synthesizer = self._synthesizer
        self._synthesizer = self._transcripts = self._listener = None
        if generator is not None:
            await asyncio.to_thread(generator.close)
        for upstream in (recogniser, synthesizer):  # their pools' connections and watchers
            if isinstance(upstream, RemoteRecogniser | RemoteVoice):
                await asyncio.to_thread(upstream.close)

    def unavailable_parts(self) -> tuple[str, ...]:
        """The parts on other servers of which no upstream is answering now (for /health)."""
        recogniser = self._transcripts.recogniser if self._transcripts is not None else None
        parts = {
            "recogniser": recogniser,
            "chat model": self._generator,
            "voice": self._synthesizer,
        }
        return tuple(
            name
            for name, part in parts.items()
            if isinstance(getattr(part, "pool", None), UpstreamPool) and not part.pool.available()  # type: ignore[union-attr]
        )

    def metrics(self) -> Mapping[str, float]:
        """The compute slot's queue and busy time, for ``GET /metrics``."""
        return {
            "compute_slot_waiting_steps": self.slot.waiting_count,
            "compute_slot_busy_seconds_total": self.slot.busy_s,
        }

    def idle(self) -> bool:
        """No step runs, waits or ran in the last ``IDLE_AFTER_S`` but those of answers
        more than ``SPARE_STEP_S`` ahead of their deadlines (spoken answers ahead of their
        listeners by the scheduler's margin and more; background work)."""
        return self.slot.calm(SPARE_STEP_S, IDLE_AFTER_S)

    def voice_table(self) -> Mapping[str, str]:
        if self._synthesizer is not None:
            return self._synthesizer.voice_table()
        return {
            voice: f"Piper voice {self.settings.tts!r}: {s.character}"
            for voice, s in VOICES.items()
        }

    def heard(self, clip: AudioClip) -> str | None:
        return self._transcripts.cached(clip) if self._transcripts is not None else None

    @property
    def transcripts(self) -> TranscriptBook:
        if self._transcripts is None:
            raise ServerError("the cascade engine is not started")
        return self._transcripts

    @property
    def listener(self) -> Listener:
        if self._listener is None:
            raise ServerError("the cascade engine is not started")
        return self._listener

    @property
    def generator(self) -> ChatModel:
        if self._generator is None:
            raise ServerError("the cascade engine is not started")
        return self._generator

    @property
    def synthesizer(self) -> PiperSynthesizer | RemoteVoice:
        if self._synthesizer is None:
            raise ServerError("the cascade engine is not started")
        return self._synthesizer

    @property
    def _voice_slot(self) -> ComputeSlot | None:
        """The slot each window of synthesis takes; none for a voice on other servers."""
        return None if isinstance(self.synthesizer, RemoteVoice) else self.slot

    @property
    def recogniser(self) -> WhisperRecogniser:
        recogniser = self.listener.recogniser
        if not isinstance(recogniser, WhisperRecogniser):
            raise ServerError("the cascade engine's recogniser is not Whisper")
        return recogniser

    # -- prepare ------------------------------------------------------------------

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration:
        pace = Pace(speaking=request.speech is not None, background=request.background)
        if request.speech is not None and isinstance(self.synthesizer, RemoteVoice):
            self.synthesizer.check_available()  # a 503 now, not a spoken answer broken off
        if any(isinstance(part, AudioClip) for turn in request.turns for part in turn.parts):
            await asyncio.to_thread(self._transcribe_all, request, pace)
        # Grammars, the chat template and the tokenizer take time in proportion to the
        # request (a 20 MB prompt: seconds): off the event loop, like the models.
        return await asyncio.to_thread(self._prepare_text, request, pace)

    def _prepare_text(self, request: GenerationRequest, pace: Pace) -> PreparedGeneration:
        transcript_of = self.transcripts.transcript  # all cached now: no blocking work
        chat = self.generator
        check_logit_bias(request, chat)
        grammar, branch = answer_constraints(request, chat)
        if isinstance(chat, RemoteChatModel):
            chat.check_request(request.sampling, offers_tools(request))
        prompt = self._prompt(request)
        # Serving checks the window too; a prompt that can not fit stops here, before more work.
        check_context_window(self.context_window_tokens, prompt.n_tokens)
        audio_tokens = sum(
            chat.count_tokens(text) for text in client_audio_transcripts(request, transcript_of)
        )
        return PreparedGeneration(
            request=request,
            context_tokens=prompt.n_tokens,
            prompt_text_tokens=max(0, prompt.n_tokens - audio_tokens),
            payload=CascadePrompt(
                prompt,
                audio_tokens,
                grammar,
                branch,
                reads_calls=offers_tools(request),
                pace=pace,
            ),
        )

    def _prompt(self, request: GenerationRequest) -> ChatPrompt:
        transcript_of = self.transcripts.transcript
        has_tool_turns = any(turn.role == "tool" for turn in request.turns)
        try:
            return self.generator.prompt(build_messages(request, transcript_of))
        except ValueError as exc:  # the template's raise_exception(): roles out of order...
            error = exc
        if has_tool_turns:  # a template that knows no "tool" role: results as user messages
            try:
                messages = build_messages(request, transcript_of, tool_role=False)
                return self.generator.prompt(messages)
            except ValueError as exc:
                error = exc
        raise InvalidValueError(
            f"The model's chat template rejected these messages: {error}", param="messages"
        ) from error

    def _transcribe_all(self, request: GenerationRequest, pace: Pace) -> None:
        clips = [
            part
            for turn in request.turns
            for part in turn.parts
            if isinstance(part, AudioClip) and self.transcripts.cached(part) is None
        ]
        recogniser = self.listener.recogniser
        if clips and isinstance(recogniser, RemoteRecogniser):  # heard elsewhere: no slot
            recogniser.hear(clips, self.transcripts)
        elif clips:
            self.listener.hear(clips, lambda: self.slot.hold(pace, Stage.LISTEN))
            # the pass's buffers, the largest the server frees; meanwhile the chat goes on
            release_free_memory_soon()

    # -- generate -----------------------------------------------------------------

    async def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        payload = prepared.payload
        if not isinstance(payload, CascadePrompt):
            raise ServerError("this generation was not prepared by the cascade engine")
        request = prepared.request
        pace = payload.pace or Pace(
            speaking=request.speech is not None, background=request.background
        )
        units: queue.SimpleQueue[str | None] | None = None
        bridge: ThreadBridge[Any] = ThreadBridge(name="omnivox-cascade")
        if request.speech is not None:
            units = queue.SimpleQueue()
            speaker = UnitSpeaker(self.synthesizer, request.speech.voice)
            slot = self._voice_slot
            bridge.spawn(
                lambda cancel: _speech_work(speaker, units, slot, pace, cancel), name="tts"
            )
        bridge.spawn(
            lambda cancel: self._text_work(prepared, payload, units, pace, cancel), name="llm"
        )
        end: GenerationEnd | None = None
        async with contextlib.aclosing(bridge.items()) as items:
            async for item in items:
                if isinstance(item, GenerationEnd):
                    end = item
                else:
                    yield item
        if end is None:
            raise ServerError()
        prompt_text_tokens = None
        if end.prompt_tokens is not None:  # the upstream counted the prompt: bill its count
            prompt_text_tokens = max(0, end.prompt_tokens - payload.audio_tokens)
        yield Finished(end.reason, end.n_tokens, prompt_text_tokens)

    def _text_work(
        self,
        prepared: PreparedGeneration,
        payload: CascadePrompt,
        units: queue.SimpleQueue[str | None] | None,
        pace: Pace,
        cancel: threading.Event,
    ) -> Iterator[TextDelta | ToolCallDelta | GenerationEnd]:
        """Runs in the chat model's thread: text deltas or tool calls, and units for the
        synthesizer (text only: a call block is never spoken)."""
        segmenter = SpeechSegmenter()
        reader = AnswerReader() if payload.reads_calls else None
        try:
            chat = self.generator
            remote = isinstance(chat, RemoteChatModel)  # its work is elsewhere: no local slot
            stream = chat.stream(
                payload.prompt,
                prepared.request.sampling,
                cancel,
                grammar=payload.grammar,
                branch=payload.branch,
                gate=ungated if remote else lambda s: self.slot.steps(s, pace, Stage.TEXT, cancel),
                response_format=prepared.request.response_format,
            )
            for item in stream:
                if isinstance(item, TokenPiece):
                    pace.wrote()
                    events = (
                        reader.feed(item.text, item.logprobs)
                        if reader is not None
                        else [TextDelta(item.text, item.logprobs)]
                    )
                else:
                    events = reader.flush() if reader is not None else []
                for event in events:
                    yield event
                    if units is not None and isinstance(event, TextDelta):
                        for unit in segmenter.feed(event.text):
                            units.put(unit)
                if isinstance(item, GenerationEnd):
                    if units is not None:
                        for unit in segmenter.flush():
                            units.put(unit)
                    yield item
        finally:
            if units is not None:
                units.put(None)  # no more units: the synthesis thread may end

    # -- reading aloud, transcription ----------------------------------------------

    async def speak(self, request: SpeechRequest) -> AsyncIterator[SpeechEvent]:
        """Read ``request.text`` aloud at ``request.speed`` (``instructions`` are not
        followed: a Piper voice has no way to take them), a synthesis window per slot step."""
        if not request.speed > 0:
            raise InvalidValueError("speed must be greater than 0", param="speed")
        speaker = UnitSpeaker(self.synthesizer, request.voice, speed=request.speed)
        input_tokens = self.generator.count_tokens(request.text)
        segmenter = SpeechSegmenter()
        units: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        for unit in [*segmenter.feed(request.text), *segmenter.flush()]:
            units.put(unit)
        units.put(None)
        pace = Pace(speaking=True, background=request.background)
        slot = self._voice_slot
        bridge: ThreadBridge[AudioDelta] = ThreadBridge(name="omnivox-cascade-speech")
        bridge.spawn(lambda cancel: _speech_work(speaker, units, slot, pace, cancel), name="tts")
        async with contextlib.aclosing(bridge.items()) as items:
            async for item in items:
                yield item
        yield SpeechFinished(input_text_tokens=input_tokens)

    async def transcribe(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptionEvent]:
        """Write down (or translate into English) the speech of ``request.clip``, a piece
        of ~28 s of speech per slot step (``transcription``), or by the upstreams of --asr."""
        pace = Pace(speaking=False, background=request.background)
        bridge: ThreadBridge[TranscriptionEvent] = ThreadBridge(
            name="omnivox-cascade-transcription"
        )
        recogniser = self.listener.recogniser
        if isinstance(recogniser, RemoteRecogniser):  # written down elsewhere: no slot
            bridge.spawn(lambda cancel: recogniser.transcription(request, cancel), name="asr")
        else:
            bridge.spawn(self._local_transcription(request, pace), name="asr")
        async with contextlib.aclosing(bridge.items()) as items:
            async for item in items:
                yield item

    def _local_transcription(
        self, request: TranscriptionRequest, pace: Pace
    ) -> Callable[[threading.Event], Iterator[TranscriptionEvent]]:
        """The work of ``transcribe`` with the embedded Whisper, once the request is checked."""
        model = self.recogniser.model
        if request.task == "translate" and known_languages(model) == ("en",):
            raise InvalidValueError(
                "This server's speech recognition model knows only English: it can not translate.",
                param="model",
            )
        if request.language is not None and request.language not in known_languages(model):
            raise InvalidValueError(
                f"Whisper does not know the language {request.language!r}; "
                "give an ISO 639-1 code such as 'en', or none to detect it.",
                param="language",
            )
        return lambda cancel: transcription_work(model, request, self.slot, pace, cancel)


def _speech_work(
    speaker: UnitSpeaker,
    units: queue.SimpleQueue[str | None],
    slot: ComputeSlot | None,
    pace: Pace,
    cancel: threading.Event,
) -> Iterator[AudioDelta]:
    """Runs in the synthesis thread: speak each unit as soon as it is cut (``slot`` None:
    the voice speaks on other servers, and its windows take no local step)."""
    while not cancel.is_set():
        try:
            unit = units.get(timeout=UNIT_POLL_S)
        except queue.Empty:
            continue
        if unit is None:
            tail = speaker.flush()
            if tail:
                yield AudioDelta(tail)
            return
        # One slot step per window: the pieces of a window made leave at once, without
        # waiting for the slot again behind other conversations' steps.
        windows = speaker.windows(unit, cancel)
        steps = windows if slot is None else slot.steps(windows, pace, Stage.SPEECH, cancel)
        spoken: str | None = unit
        for pieces in steps:
            for pcm in pieces:
                pace.spoke(len(pcm))
                yield AudioDelta(pcm, spoken)
                spoken = None
        release_free_memory()  # the unit's audio has left: what its synthesis freed


@contextlib.contextmanager
def _loading(what: str, path: Path, flag: str) -> Iterator[None]:
    """Any failure to load a model becomes one ModelUnavailableError naming it."""
    try:
        yield
    except ModelUnavailableError:
        raise
    except Exception as exc:
        raise ModelUnavailableError(
            f"Could not load the {what} from {path} ({type(exc).__name__}: {exc}); "
            f"check the file, or choose another with {flag}."
        ) from exc


def create_engine(settings: Settings) -> CascadeEngine:
    return CascadeEngine(settings)
