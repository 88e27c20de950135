"""The vllm-omni engine: Qwen2.5-Omni or Qwen3-Omni on vLLM-Omni servers (``--upstream``).

Only ``create_engine`` is exported; the engine's modules are imported when it is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnivox.engines.vllm_omni.engine import VllmOmniEngine
    from omnivox.settings import Settings

__all__ = ["create_engine"]


def create_engine(settings: Settings) -> VllmOmniEngine:
    from omnivox.engines.vllm_omni.engine import VllmOmniEngine

    return VllmOmniEngine(settings)
