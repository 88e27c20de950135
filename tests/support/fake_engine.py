"""The test engine, which lives in ``devtools.fake_engine`` (the benchmarks serve it too).

Kept so that ``omnivox serve --engine tests.support.fake_engine:create`` and the
tests' imports read as before.
"""

from __future__ import annotations

from devtools.fake_engine import (
    ARGUMENT_PIECE_CHARS,
    CONTEXT_WINDOW_TOKENS,
    WORD_DURATION_S,
    FakeEngine,
    create,
    word_tone,
)

__all__ = [
    "ARGUMENT_PIECE_CHARS",
    "CONTEXT_WINDOW_TOKENS",
    "WORD_DURATION_S",
    "FakeEngine",
    "create",
    "word_tone",
]
