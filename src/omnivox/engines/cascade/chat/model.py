"""What the cascade asks of its chat model, embedded (``generator``) or on a server (``remote``).

The engine builds chat messages, turns them into a ``ChatPrompt`` (the model's own
template and tokens where it has them; the messages themselves for a server), and
streams the answer as ``TokenPiece`` s ending with one ``GenerationEnd``, under the
grammars ``constraints`` chose.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from omnivox.engines.base import ResponseFormat, SamplingParams
from omnivox.engines.events import TokenLogprob


@dataclass(frozen=True, slots=True)
class TokenPiece:
    """Text of one or more generated tokens, with their logprobs when asked for."""

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True, slots=True)
class Grammar:
    """GBNF text (its first rule ``root``), and character pairs no one token may write.

    A token such as ``},`` decides inside one token both that a tool call ends and
    that another follows, a choice the model never weighs as such. With
    ``unjoined=(("}", ","),)`` every token holding a ``}`` and a later ``,`` is
    banned, so the model writes them apart and chooses between ``,`` and ``]``.
    With ``stoppable`` False the client's stop sequences do not cut the text (a
    tool call's arguments must parse whatever the stop sequences say).
    """

    text: str
    unjoined: tuple[tuple[str, str], ...] = ()
    stoppable: bool = True


@dataclass(frozen=True, slots=True)
class GrammarBranch:
    """A constrained block (``grammar``, which begins with ``opener``) or a free answer.

    ``otherwise`` is the grammar of the free answer (None: any text); a ``bias``
    of ``-inf`` never takes the block.
    """

    opener: str
    grammar: Grammar
    bias: float
    otherwise: Grammar | None = None


StepGate = Callable[[Iterator[Any]], Iterator[Any]]
"""Wraps the chat model's steps (each ``next()`` of the given iterator is one step)."""


def ungated(steps: Iterator[Any]) -> Iterator[Any]:
    return steps


@dataclass(frozen=True, slots=True)
class GenerationEnd:
    """``prompt_tokens``: the prompt's exact count when only the answer tells it (a server)."""

    reason: Literal["stop", "length"]
    n_tokens: int
    prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A conversation ready for the chat model: ``n_tokens`` is what it occupies in the
    model's context (exact for the embedded model, estimated for a server until its
    answer says)."""

    messages: tuple[Mapping[str, Any], ...]
    text: str
    tokens: tuple[int, ...]
    n_tokens: int


class ChatModel(Protocol):
    context_window_tokens: int

    @property
    def n_vocab(self) -> int | None:
        """The vocabulary's size, for checking ``logit_bias`` keys (None: not known here)."""
        ...

    def prompt(self, messages: Sequence[Mapping[str, Any]]) -> ChatPrompt:
        """Raises ``ValueError`` when the model's chat template refuses the messages."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def grammar_is_valid(self, grammar: str) -> bool: ...

    def stream(
        self,
        prompt: ChatPrompt,
        sampling: SamplingParams,
        cancel: threading.Event,
        *,
        grammar: Grammar | None = None,
        branch: GrammarBranch | None = None,
        gate: StepGate = ungated,
        response_format: ResponseFormat | None = None,
    ) -> Iterator[TokenPiece | GenerationEnd]:
        """``gate`` wraps each model step (a local model's compute slot); ``response_format``
        is the answer's format as asked (a model without grammars passes it on)."""
        ...

    def close(self) -> None: ...
