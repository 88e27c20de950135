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

    Always an even number of bytes (whole samples).
    """

    pcm_s16le: bytes


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a tool call; ``call_id`` and ``name`` only on the first one."""

    index: int
    arguments: str
    call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Finished:
    """The last event of every generation."""

    reason: FinishReason
    completion_text_tokens: int


EngineEvent = TextDelta | AudioDelta | ToolCallDelta | Finished
