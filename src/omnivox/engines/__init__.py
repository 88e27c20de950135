"""Model back ends behind one small Protocol (``base.Engine``), and their registry.

``create_engine(settings)`` resolves ``settings.engine``: a built-in name
("cascade", "omni", "vllm-omni") or any ``"package.module:factory"`` string; the factory is
called with the settings and returns an engine that is not started yet.
Modules are imported only when named, so heavy libraries load only for the
engine in use. A name that can not be resolved raises ``ModelUnavailableError``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from omnivox.errors import ModelUnavailableError

if TYPE_CHECKING:
    from omnivox.engines.base import Engine
    from omnivox.settings import Settings

BUILTIN_ENGINES = {
    "cascade": "omnivox.engines.cascade:create_engine",
    "omni": "omnivox.engines.omni:create_engine",
    "vllm-omni": "omnivox.engines.vllm_omni:create_engine",
}
INSTALL_HINTS = {"omni": "pip install 'omnivox[omni]'"}

__all__ = ["BUILTIN_ENGINES", "create_engine"]


def create_engine(settings: Settings) -> Engine:
    name = settings.engine
    target = BUILTIN_ENGINES.get(name, name)
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ModelUnavailableError(
            f"Unknown engine {name!r}: use one of {', '.join(BUILTIN_ENGINES)} "
            "or 'package.module:factory'."
        )
    factory = _resolve(name, module_name, attr)
    engine: Engine = factory(settings)
    return engine


def _resolve(name: str, module_name: str, attr: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_name
        if module_name == missing or module_name.startswith(f"{missing}."):
            why = f"module {module_name!r} does not exist in this installation"
        else:
            why = f"it needs the package {missing!r}, which is not installed"
        hint = INSTALL_HINTS.get(name)
        raise ModelUnavailableError(
            f"Engine {name!r} can not be loaded: {why}." + (f" Try `{hint}`." if hint else "")
        ) from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelUnavailableError(f"Engine {name!r}: {module_name} has no factory {attr!r}.")
    return factory
