"""OpenAI's voice names mapped to the speakers an omni checkpoint ships.

The table is shared with the vllm-omni engine and lives in ``omnivox.engines.qwen_omni``,
which documents it; this module names it for the omni engine's own modules.
"""

from __future__ import annotations

from omnivox.engines.qwen_omni import (
    FEMALE,
    MALE,
    QWEN2_5_SPEAKERS,
    QWEN3_SPEAKERS,
    RELAXED_MALE,
    SPEAKER_DESCRIPTIONS,
    VOICE_SPEAKERS,
    display_name,
    speaker_for,
    voice_table,
)

__all__ = [
    "FEMALE",
    "MALE",
    "QWEN2_5_SPEAKERS",
    "QWEN3_SPEAKERS",
    "RELAXED_MALE",
    "SPEAKER_DESCRIPTIONS",
    "VOICE_SPEAKERS",
    "display_name",
    "speaker_for",
    "voice_table",
]
