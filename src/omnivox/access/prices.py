"""Prices per model class in US dollars per million tokens, and the cost of one request.

Defaults are OpenAI's list prices from the model pages: the gpt-4o-audio class
text $2.50 in / $10 out and audio $40 / $80, the gpt-4o-mini-audio class text
$0.15 / $0.60 and audio $10 / $20. A limits file may replace them (``tiers``
loads it). This module knows nothing of keys or limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TOKENS_PER_MILLION = 1_000_000
GPT_4O_AUDIO = "gpt-4o-audio"
GPT_4O_MINI_AUDIO = "gpt-4o-mini-audio"


@dataclass(frozen=True, slots=True)
class Prices:
    text_input_usd_per_1m: float
    text_output_usd_per_1m: float
    audio_input_usd_per_1m: float
    audio_output_usd_per_1m: float

    @classmethod
    def from_toml(cls, table: dict[str, Any], name: str) -> Prices:
        fields = cls.__dataclass_fields__
        unknown = set(table) - set(fields)
        if unknown:
            raise ValueError(f"prices.{name}: unknown keys {sorted(unknown)}; use {list(fields)}")
        missing = set(fields) - set(table)
        if missing:
            raise ValueError(f"prices.{name}: missing {sorted(missing)}")
        return cls(**{k: float(v) for k, v in table.items()})

    def cost_usd(
        self,
        prompt_text_tokens: int,
        prompt_audio_tokens: int,
        completion_text_tokens: int,
        completion_audio_tokens: int,
    ) -> float:
        micro_usd = (
            prompt_text_tokens * self.text_input_usd_per_1m
            + prompt_audio_tokens * self.audio_input_usd_per_1m
            + completion_text_tokens * self.text_output_usd_per_1m
            + completion_audio_tokens * self.audio_output_usd_per_1m
        )
        return micro_usd / TOKENS_PER_MILLION


DEFAULT_PRICES: dict[str, Prices] = {
    GPT_4O_AUDIO: Prices(2.50, 10.00, 40.00, 80.00),
    GPT_4O_MINI_AUDIO: Prices(0.15, 0.60, 10.00, 20.00),
}
