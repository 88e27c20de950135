"""Usage tiers: RPM / RPD / TPM per tier and model class, the defaults, and the limits file.

Which class a request is limited and priced as comes from the model name the
client asked for: a name containing ``mini`` (``gpt-4o-mini-audio-preview``,
``gpt-audio-mini``) is the gpt-4o-mini-audio class, every other name
(``gpt-4o-audio-preview``, ``gpt-audio``, omnivox's own ``omnivox-audio``) the
gpt-4o-audio class. One served model answers to all of them; the class only
decides limits and prices, as it would at OpenAI.

The default tables are those of the model pages. A tier without a class (the
free tier has no gpt-4o-audio) gives no access to that class. ``None`` means
no limit of that kind (Tier 2+ have no RPD).

Limits file (TOML), every part optional; an entry replaces the default entry
of the same tier and class, so a missing ``rpd`` there means no RPD limit::

    default_output_tokens = 2048      # charged at admission when a request names no max

    [tiers.free.gpt-4o-mini-audio]
    rpm = 3
    rpd = 200
    tpm = 40000
    batch_queue_tokens = 0            # prompt tokens enqueued in unfinished batches

    [tiers.team.gpt-4o-audio]         # new tier names are allowed
    rpm = 60
    tpm = 100000

    [prices.gpt-4o-audio]             # US dollars per million tokens
    text_input_usd_per_1m = 2.5
    text_output_usd_per_1m = 10.0
    audio_input_usd_per_1m = 40.0
    audio_output_usd_per_1m = 80.0
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnivox.access.prices import DEFAULT_PRICES, GPT_4O_AUDIO, GPT_4O_MINI_AUDIO, Prices

MODEL_CLASSES = (GPT_4O_AUDIO, GPT_4O_MINI_AUDIO)
# Charged as the output of a request that sets neither max_completion_tokens nor max_tokens:
# about a minute of speech (20 audio tokens/s) with its transcript. The charge is corrected
# to the actual usage when the request ends, so this only bounds how many such requests a
# key may have in flight at once.
DEFAULT_OUTPUT_TOKENS = 2048


def model_class(requested_model: str) -> str:
    """The tier-table class of a requested model name (see the module docstring)."""
    return GPT_4O_MINI_AUDIO if "mini" in requested_model else GPT_4O_AUDIO


@dataclass(frozen=True, slots=True)
class Limits:
    rpm: int | None = None
    rpd: int | None = None
    tpm: int | None = None
    # The prompt tokens a key may have enqueued in unfinished batches (the Batch API's
    # "batch queue limit"); None: no limit.
    batch_queue_tokens: int | None = None

    def overridden_by(self, overrides: Limits) -> Limits:
        return Limits(
            rpm=overrides.rpm if overrides.rpm is not None else self.rpm,
            rpd=overrides.rpd if overrides.rpd is not None else self.rpd,
            tpm=overrides.tpm if overrides.tpm is not None else self.tpm,
            batch_queue_tokens=(
                overrides.batch_queue_tokens
                if overrides.batch_queue_tokens is not None
                else self.batch_queue_tokens
            ),
        )

    @classmethod
    def from_toml(cls, table: dict[str, Any], where: str) -> Limits:
        unknown = set(table) - {"rpm", "rpd", "tpm", "batch_queue_tokens"}
        if unknown:
            raise ValueError(
                f"{where}: unknown keys {sorted(unknown)}; use rpm, rpd, tpm, batch_queue_tokens"
            )
        values = {k: whole_number(v, f"{where}.{k}") for k, v in table.items()}
        if any(v < 1 for k, v in values.items() if k != "batch_queue_tokens"):
            raise ValueError(f"{where}: limits must be at least 1 (leave a key out for no limit)")
        if values.get("batch_queue_tokens", 0) < 0:
            raise ValueError(f"{where}: batch_queue_tokens must be at least 0 (0: no batches)")
        return cls(**values)


def whole_number(value: Any, where: str) -> int:
    """A TOML integer; a string, float or boolean is an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be a whole number, not {value!r}")
    return value


def _both(mini: Limits, full: Limits | None) -> dict[str, Limits]:
    table = {GPT_4O_MINI_AUDIO: mini}
    if full is not None:
        table[GPT_4O_AUDIO] = full
    return table


# RPM, RPD, TPM and the batch queue limit, as the model pages give them (the free tier has
# no batch queue: 0).
DEFAULT_TIERS: dict[str, dict[str, Limits]] = {
    "free": _both(Limits(3, 200, 40_000, 0), None),
    "1": _both(Limits(500, 10_000, 200_000, 2_000_000), Limits(500, None, 30_000, 90_000)),
    "2": _both(Limits(5_000, None, 2_000_000, 20_000_000), Limits(5_000, None, 450_000, 1_350_000)),
    "3": _both(
        Limits(5_000, None, 4_000_000, 40_000_000), Limits(5_000, None, 800_000, 50_000_000)
    ),
    "4": _both(
        Limits(10_000, None, 10_000_000, 1_000_000_000),
        Limits(10_000, None, 2_000_000, 2_000_000),
    ),
    "5": _both(
        Limits(30_000, None, 150_000_000, 15_000_000_000),
        Limits(10_000, None, 30_000_000, 5_000_000_000),
    ),
}


@dataclass(frozen=True)
class AccessConfig:
    """Tiers, prices and the default output charge: everything a limits file can set."""

    tiers: Mapping[str, Mapping[str, Limits]] = field(default_factory=lambda: DEFAULT_TIERS)
    prices: Mapping[str, Prices] = field(default_factory=lambda: DEFAULT_PRICES)
    default_output_tokens: int = DEFAULT_OUTPUT_TOKENS

    def limits_for(self, tier: str, model_cls: str, overrides: Limits) -> Limits | None:
        """A key's limits for a class; None when its tier has no access to the class."""
        base = self.tiers.get(tier, {}).get(model_cls)
        return None if base is None else base.overridden_by(overrides)


def load_access_config(path: Path | None) -> AccessConfig:
    """The defaults, with a limits file (if any) laid over them."""
    if path is None:
        return AccessConfig()
    with path.open("rb") as f:
        data = tomllib.load(f)
    unknown = set(data) - {"tiers", "prices", "default_output_tokens"}
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    tiers = {name: dict(classes) for name, classes in DEFAULT_TIERS.items()}
    for tier, classes in data.get("tiers", {}).items():
        for cls, table in classes.items():
            _check_class(cls, f"{path}: tiers.{tier}")
            where = f"{path}: tiers.{tier}.{cls}"
            tiers.setdefault(str(tier), {})[cls] = Limits.from_toml(table, where)
    prices = dict(DEFAULT_PRICES)
    for cls, table in data.get("prices", {}).items():
        _check_class(cls, f"{path}: prices")
        prices[cls] = Prices.from_toml(table, cls)
    default_output = whole_number(
        data.get("default_output_tokens", DEFAULT_OUTPUT_TOKENS), f"{path}: default_output_tokens"
    )
    if default_output < 1:
        raise ValueError(f"{path}: default_output_tokens must be at least 1")
    return AccessConfig(tiers, prices, default_output)


def _check_class(cls: str, where: str) -> None:
    if cls not in MODEL_CLASSES:
        raise ValueError(f"{where}.{cls}: unknown model class; use {', '.join(MODEL_CLASSES)}")
