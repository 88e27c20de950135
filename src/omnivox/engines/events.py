"""Typed events that engines yield while they generate one answer.

An engine's output is a stream of these events and nothing else: words of the
reply (``TextDelta``), speech (``AudioDelta``), tool calls (``ToolCallDelta``) and
exactly one ``Finished`` at the end. The events know nothing of HTTP, JSON or
OpenAI's wire names; ``serving`` turns them into chunks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the reply's text (the transcript, when the reply is spoken)."""

    text: str
    # Per generated token: (token text, logprob, [(alternative, logprob), ...]).
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class AudioDelta:
    """Speech: signed 16-bit little-endian mono PCM at ``OUTPUT_SAMPLE_RATE``.

    Always an even number of bytes (whole samples). ``spoken``: on the first audio of
    each piece of text the voice speaks, that text, when the engine knows it (the
    cascade speaks its answer unit by unit); a listener who stopped the audio part-way
    then knows which words were heard.
    """

    pcm_s16le: bytes
    spoken: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; ``call_id`` and ``name`` only on the first one."""

    index: int
    arguments: str
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every generation. ``prompt_text_tokens``: the prompt's exact
    text tokens when only the end of the answer tells them (a model on another server);
    None keeps the count made in ``prepare``."""

    reason: FinishReason
    completion_text_tokens: int
    prompt_text_tokens: int | None = None


EngineEvent = TextDelta | AudioDelta | ToolCallDelta | Finished


# -- reading text aloud (``SpeakingEngine.speak``) -------------------------------------------


@dataclass(frozen=True, slots=True)
class SpeechFinished:
    """The last event of a reading: how many text tokens the input was."""

    input_text_tokens: int


SpeechEvent = AudioDelta | SpeechFinished


# -- transcription (``TranscribingEngine.transcribe``) ---------------------------------------


@dataclass(frozen=True, slots=True)
class TranscriptionStarted:
    """The first event: the language heard (an ISO 639-1 code; the one asked for, or the
    one detected) and the length of the whole clip."""

    language: str
    duration_s: float


@dataclass(frozen=True, slots=True)
class TranscribedWord:
    word: str  # with its leading space, as the recogniser writes it
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True)
class TranscriptSegment:
    """A stretch of recognised speech, times in seconds from the start of the clip; the
    recogniser's own measures of it (OpenAI's ``verbose_json`` segment fields)."""

    index: int
    seek: int
    start_s: float
    end_s: float
    text: str
    tokens: tuple[int, ...]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    words: tuple[TranscribedWord, ...] = ()


@dataclass(frozen=True, slots=True)
class TranscriptionFinished:
    """The last event: the text tokens of the prompt given, and of the transcript made."""

    prompt_text_tokens: int
    output_text_tokens: int


TranscriptionEvent = TranscriptionStarted | TranscriptSegment | TranscriptionFinished
