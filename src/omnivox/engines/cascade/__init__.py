"""The cascade engine: faster-whisper -> llama.cpp chat model -> Piper, streamed.

Only ``create_engine`` is exported; the heavy libraries load when the engine
starts, not when this package is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnivox.engines.cascade.engine import CascadeEngine
    from omnivox.settings import Settings

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> CascadeEngine:
    from omnivox.engines.cascade.engine import CascadeEngine

    return CascadeEngine(settings)
