"""The omni engine: one native speech-to-speech model (Qwen2.5-Omni or Qwen3-Omni).

Only ``create_engine`` is exported. torch and transformers load when the engine
starts, never when this package is imported, so ``omnivox --help`` and the
cascade engine work without them (``pip install 'omnivox[omni]'`` adds them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnivox.engines.omni.engine import OmniEngine
    from omnivox.settings import Settings

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> OmniEngine:
    from omnivox.engines.omni.engine import OmniEngine

    return OmniEngine(settings)
