"""What every engine receives and the small Protocol it implements.

A request reaches an engine as a ``GenerationRequest``: the conversation as
``Turn`` objects whose parts are plain text or decoded ``AudioClip`` s, the
sampling parameters, the tools, and whether (and in which voice) to speak.
The engine first ``prepare`` s it (recognise speech, apply the chat template,
count tokens; errors raised here reach the client as ordinary HTTP errors),
then ``generate`` s typed events from the prepared prompt.

This module knows nothing of HTTP or of OpenAI's wire models.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from omnivox.engines.events import EngineEvent, SpeechEvent, TranscriptionEvent
from omnivox.errors import ContextLengthExceededError

Role = Literal["system", "developer", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class AudioClip:
    """Decoded mono audio as float32 samples in [-1, 1].

    ``transcript`` is set when the words are already known (an earlier
    assistant answer referenced by its audio id); ``sha256`` identifies the
    clip's content for caches.
    """

    samples: np.ndarray
    sample_rate: int
    sha256: str
    transcript: str | None = None

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate


Part = str | AudioClip


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Turn:
    role: Role
    parts: tuple[Part, ...] = ()
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        """The turn's text parts joined (audio parts are not included)."""
        return "".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str | None = None
    parameters_schema: Mapping[str, Any] | None = None
    strict: bool = False


ToolChoice = (
    Literal["none", "auto", "required"] | str
)  # a str other than the three names a function


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """``kind`` is "text", "json_object" or "json_schema"."""

    kind: Literal["text", "json_object", "json_schema"] = "text"
    schema: Mapping[str, Any] | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_output_tokens: int | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: Mapping[int, float] = field(default_factory=dict)
    logprobs: bool = False
    top_logprobs: int = 0

    def with_seed(self, seed: int | None) -> SamplingParams:
        return replace(self, seed=seed)


@dataclass(frozen=True, slots=True)
class SpeechOutput:
    """Speak the answer. ``voice`` is an OpenAI voice name; each engine maps it."""

    voice: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    turns: tuple[Turn, ...]
    sampling: SamplingParams = SamplingParams()
    speech: SpeechOutput | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: ToolChoice = "none"
    parallel_tool_calls: bool = True
    response_format: ResponseFormat = ResponseFormat()
    # Work nobody waits on (a batch's line): an engine that shares its compute between
    # requests gives it to this one only when no other request wants it.
    background: bool = False


@dataclass(frozen=True, slots=True)
class PreparedGeneration:
    """A request made ready to generate.

    ``context_tokens`` is what the prompt occupies in the model's context;
    ``prompt_text_tokens`` the part of it billed as text (transcripts of audio
    the client sent are billed as audio instead). ``payload`` is the engine's own.
    """

    request: GenerationRequest
    context_tokens: int
    prompt_text_tokens: int
    payload: Any = None


def check_context_window(
    window_tokens: int, context_tokens: int, max_output_tokens: int | None = None
) -> None:
    """Refuse a prompt of ``context_tokens`` that, alone or with the ``max_output_tokens``
    asked for, does not fit a context of ``window_tokens``, in OpenAI's words.

    Serving checks every prepared generation with it; an engine calls it only to stop
    early on a prompt that can not fit, before work that would be thrown away.
    """
    head = f"This model's maximum context length is {window_tokens} tokens. However, "
    if context_tokens >= window_tokens:
        raise ContextLengthExceededError(
            f"{head}your messages resulted in {context_tokens} tokens. "
            "Please reduce the length of the messages.",
            param="messages",
        )
    if max_output_tokens is not None and context_tokens + max_output_tokens > window_tokens:
        raise ContextLengthExceededError(
            f"{head}you requested {context_tokens + max_output_tokens} tokens "
            f"({context_tokens} in the messages, {max_output_tokens} in the completion). "
            "Please reduce the length of the messages or completion.",
            param="messages",
        )


@dataclass(frozen=True, slots=True)
class SpeechRequest:
    """Read ``text`` aloud in ``voice`` (an OpenAI voice name, mapped by the engine) at
    ``speed`` times the voice's own pace. ``instructions`` are what the client asked of
    the delivery; an engine that can not follow them says so in its documentation."""

    text: str
    voice: str
    speed: float = 1.0
    instructions: str | None = None
    background: bool = False  # nobody waits on it (a batch's line): it yields to all else


TranscriptionTask = Literal["transcribe", "translate"]


@dataclass(frozen=True, slots=True)
class TranscriptionRequest:
    """Write down the speech in ``clip`` (``translate``: in English). ``language`` (ISO
    639-1) skips detection; ``prompt`` is text the recogniser continues from (spellings,
    names, style); ``word_timestamps`` asks for each word's times."""

    clip: AudioClip
    task: TranscriptionTask = "transcribe"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    word_timestamps: bool = False
    background: bool = False  # nobody waits on it (a batch's line): it yields to all else


Capability = Literal[
    "tools", "response_format", "logprobs", "speech", "text_to_speech", "transcription"
]


@runtime_checkable
class Engine(Protocol):
    """A model back end. Implementations live in ``omnivox.engines.<name>``."""

    name: str
    context_window_tokens: int
    capabilities: frozenset[Capability]

    def voice_table(self) -> Mapping[str, str]:
        """OpenAI voice name -> a description of the engine's voice it maps to."""
        ...

    def model_names(self) -> tuple[str, ...]:
        """The models behind the engine as configured (names, paths or hub ids): the
        ``system_fingerprint`` of every answer is derived from them and the engine's name."""
        ...

    async def start(self) -> None:
        """Load models; raise ``ModelUnavailableError`` with a clear message."""
        ...

    async def close(self) -> None: ...

    async def prepare(self, request: GenerationRequest) -> PreparedGeneration: ...

    def generate(self, prepared: PreparedGeneration) -> AsyncIterator[EngineEvent]:
        """Yield events; the last is ``Finished``. Cancelling the iterator stops the work."""
        ...


@runtime_checkable
class SpeakingEngine(Protocol):
    """An engine that reads text aloud (capability "text_to_speech")."""

    def speak(self, request: SpeechRequest) -> AsyncIterator[SpeechEvent]:
        """``AudioDelta`` s (24 kHz s16le, as made), then one ``SpeechFinished``.
        Cancelling the iterator stops the work."""
        ...


@runtime_checkable
class HearingEngine(Protocol):
    """An engine that turns the user's audio into words before answering (a cascade)."""

    def heard(self, clip: AudioClip) -> str | None:
        """The words it recognised in ``clip`` for a prompt, if it has (no work is done)."""
        ...


@runtime_checkable
class IdlingEngine(Protocol):
    """An engine that knows when it has nothing urgent to do (the cascade, whose steps share
    the CPU): work that may be thrown away is started sooner while it is idle."""

    def idle(self) -> bool:
        """True when work started now, for a fraction of a second, makes nobody late:
        nothing runs or waits, or has for a moment, but work well ahead of when it is
        needed (an answer ahead of its listener)."""
        ...


@runtime_checkable
class TranscribingEngine(Protocol):
    """An engine that writes down speech (capability "transcription"; translation into
    English when ``translates`` is true)."""

    translates: bool

    def transcribe(self, request: TranscriptionRequest) -> AsyncIterator[TranscriptionEvent]:
        """``TranscriptionStarted``, the segments in order as each is recognised, then one
        ``TranscriptionFinished``. Cancelling the iterator stops the work."""
        ...
