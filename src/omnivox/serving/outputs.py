"""The events of one completion after serving has handled the engine's events.

They carry the choice index and OpenAI-level facts the engine does not know
(tool-call ids, the audio id and its expiry, usage). ``sse`` renders them as
chunks and ``fold`` folds them into one completion; both read the same stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from omnivox.engines.events import TokenLogprob
from omnivox.protocol.responses import (
    ChatCompletionTokenLogprob,
    ChoiceLogprobs,
    CompletionUsage,
    FinishReason,
    TopLogprob,
)


@dataclass(frozen=True, slots=True)
class ChoiceText:
    index: int
    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class ChoiceAudio:
    index: int
    pcm_s16le: bytes


@dataclass(frozen=True, slots=True)
class ChoiceToolCall:
    index: int
    call_index: int
    call_id: str | None
    name: str | None
    arguments: str


@dataclass(frozen=True, slots=True)
class AudioStarted:
    """The choice will be spoken; its audio id, known before the first word."""

    index: int
    audio_id: str


@dataclass(frozen=True, slots=True)
class AudioDone:
    """The spoken answer is complete and stored under ``audio_id`` until ``expires_at``:
    committed, so the id survives a crash of this process from this event on."""

    index: int
    audio_id: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class ChoiceFinish:
    index: int
    reason: FinishReason


@dataclass(frozen=True, slots=True)
class UsageReady:
    usage: CompletionUsage


OutputEvent = (
    ChoiceText | ChoiceAudio | ChoiceToolCall | AudioStarted | AudioDone | ChoiceFinish | UsageReady
)


def wire_logprobs(logprobs: Sequence[TokenLogprob]) -> ChoiceLogprobs:
    """Token logprobs in the shape of §2 (``bytes`` are the token's UTF-8)."""
    return ChoiceLogprobs(
        content=[
            ChatCompletionTokenLogprob(
                token=lp.token,
                logprob=lp.logprob,
                bytes=list(lp.token.encode()),
                top_logprobs=[
                    TopLogprob(token=t, logprob=p, bytes=list(t.encode())) for t, p in lp.top
                ],
            )
            for lp in logprobs
        ],
        refusal=None,
    )
