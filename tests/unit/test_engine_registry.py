"""Resolving ``settings.engine`` to an engine factory."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from omnivox.engines import BUILTIN_ENGINES, create_engine
from omnivox.errors import ModelUnavailableError
from omnivox.settings import Settings


def test_cascade_is_the_default_and_is_not_started_on_creation() -> None:
    engine = create_engine(Settings())
    assert engine.name == "cascade"
    assert "speech" in engine.capabilities


def test_a_module_factory_string_is_imported_and_called_with_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("my_engines")
    received: list[Any] = []
    module.make = lambda settings: received.append(settings) or "an engine"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_engines", module)
    settings = Settings(engine="my_engines:make")
    assert create_engine(settings) == "an engine"
    assert received == [settings]


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("nonsense", "Unknown engine 'nonsense'"),
        ("no_such_package.engines:make", "does not exist"),
        ("omnivox.engines:no_such_factory", "has no factory"),
    ],
)
def test_unresolvable_engines_raise_model_unavailable(engine: str, message: str) -> None:
    with pytest.raises(ModelUnavailableError, match=message):
        create_engine(Settings(engine=engine))


def test_a_missing_omni_engine_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(BUILTIN_ENGINES, "omni", "omnivox.engines.not_installed:create_engine")
    with pytest.raises(ModelUnavailableError, match=r"'omni'.*pip install 'omnivox\[omni\]'"):
        create_engine(Settings(engine="omni"))
