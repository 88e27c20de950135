"""The engine the overhead benchmark serves: the test engine with no delays."""

from __future__ import annotations

from typing import Any

from devtools.fake_engine import FakeEngine


def create(settings: Any) -> FakeEngine:
    return FakeEngine(word_delay_s=0.0)
