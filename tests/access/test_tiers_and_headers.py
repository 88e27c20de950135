"""Tier tables, model classes, prices, the limits file, and OpenAI's header formats."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnivox.access.headers import go_duration, rate_limit_headers, retry_headers
from omnivox.access.ledger import parse_since_s
from omnivox.access.limiter import Meter
from omnivox.access.prices import DEFAULT_PRICES
from omnivox.access.tiers import DEFAULT_TIERS, Limits, load_access_config, model_class

MINI, FULL = "gpt-4o-mini-audio", "gpt-4o-audio"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.017, "17ms"),
        (0.1261, "127ms"),  # rounded up: waiting what we say is always enough
        (1, "1s"),
        (1.5, "1.5s"),
        (20, "20s"),
        (360, "6m0s"),
        (252.172, "4m12.172s"),
        (83909.144, "23h18m29.144s"),
        (3600, "1h0m0s"),
    ],
)
def test_durations_are_written_the_way_go_writes_them(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_retry_headers_are_whole_seconds_of_at_least_one_and_exact_milliseconds() -> None:
    assert retry_headers(0.2) == {"retry-after": "1", "retry-after-ms": "200"}
    assert retry_headers(19.914) == {"retry-after": "20", "retry-after-ms": "19914"}
    assert retry_headers(0) == {"retry-after": "1", "retry-after-ms": "1"}


def test_headers_report_the_tighter_of_rpm_and_rpd() -> None:
    meters = (Meter("rpm", 3, 1.0), Meter("rpd", 200, 199.0), Meter("tpm", 40_000, 1000.0))
    headers = rate_limit_headers(meters)
    assert headers == {
        "x-ratelimit-limit-requests": "200",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": go_duration(199 / (200 / 86_400)),
        "x-ratelimit-limit-tokens": "40000",
        "x-ratelimit-remaining-tokens": "39000",
        "x-ratelimit-reset-tokens": "1.5s",
    }
    assert rate_limit_headers((Meter("rpm", 60, 1.0),))["x-ratelimit-reset-requests"] == "1s"
    assert rate_limit_headers(()) == {}


def test_default_tiers_are_the_model_pages_tables() -> None:
    """RPM, RPD, TPM and the batch queue limit (enqueued prompt tokens)."""
    assert DEFAULT_TIERS["free"] == {MINI: Limits(3, 200, 40_000, 0)}  # no gpt-4o-audio on free
    assert DEFAULT_TIERS["1"] == {
        MINI: Limits(500, 10_000, 200_000, 2_000_000),
        FULL: Limits(500, None, 30_000, 90_000),
    }
    assert DEFAULT_TIERS["2"] == {
        MINI: Limits(5_000, None, 2_000_000, 20_000_000),
        FULL: Limits(5_000, None, 450_000, 1_350_000),
    }
    assert DEFAULT_TIERS["3"] == {
        MINI: Limits(5_000, None, 4_000_000, 40_000_000),
        FULL: Limits(5_000, None, 800_000, 50_000_000),
    }
    assert DEFAULT_TIERS["4"] == {
        MINI: Limits(10_000, None, 10_000_000, 1_000_000_000),
        FULL: Limits(10_000, None, 2_000_000, 2_000_000),
    }
    assert DEFAULT_TIERS["5"] == {
        MINI: Limits(30_000, None, 150_000_000, 15_000_000_000),
        FULL: Limits(10_000, None, 30_000_000, 5_000_000_000),
    }


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("gpt-4o-mini-audio-preview", MINI),
        ("gpt-4o-mini-audio-preview-2024-12-17", MINI),
        ("gpt-audio-mini", MINI),
        ("gpt-4o-audio-preview", FULL),
        ("gpt-audio", FULL),
        ("omnivox-audio", FULL),
        ("omnivox-audio-2026-11-22", FULL),
    ],
)
def test_the_class_comes_from_the_requested_name(name: str, cls: str) -> None:
    assert model_class(name) == cls


def test_prices_are_per_million_tokens_per_modality() -> None:
    full, mini = DEFAULT_PRICES[FULL], DEFAULT_PRICES[MINI]
    assert full.cost_usd(1_000_000, 0, 0, 0) == pytest.approx(2.50)
    assert full.cost_usd(0, 0, 1_000_000, 0) == pytest.approx(10.0)
    assert full.cost_usd(0, 1_000_000, 0, 1_000_000) == pytest.approx(40.0 + 80.0)
    assert mini.cost_usd(1_000_000, 1_000_000, 1_000_000, 1_000_000) == pytest.approx(
        0.15 + 10 + 0.60 + 20
    )


def test_a_limits_file_replaces_entries_adds_tiers_and_prices(tmp_path: Path) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(
        """
default_output_tokens = 300
[tiers.free.gpt-4o-audio]
rpm = 2
tpm = 1000
[tiers.team.gpt-4o-mini-audio]
rpm = 7
[prices.gpt-4o-mini-audio]
text_input_usd_per_1m = 1
text_output_usd_per_1m = 2
audio_input_usd_per_1m = 3
audio_output_usd_per_1m = 4
"""
    )
    config = load_access_config(path)
    assert config.default_output_tokens == 300
    assert config.limits_for("free", FULL, Limits()) == Limits(2, None, 1000)
    assert config.limits_for("free", MINI, Limits()) == Limits(3, 200, 40_000, 0)  # untouched
    assert config.limits_for("team", MINI, Limits(tpm=50)) == Limits(7, None, 50)
    assert config.limits_for("team", FULL, Limits()) is None
    assert config.prices[MINI].cost_usd(1_000_000, 0, 0, 1_000_000) == pytest.approx(5.0)
    assert config.prices[FULL] == DEFAULT_PRICES[FULL]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tiers.free.gpt-5]\nrpm = 1", "unknown model class"),
        ("[tiers.free.gpt-4o-audio]\nrps = 1", "unknown keys"),
        ("[tiers.free.gpt-4o-audio]\nrpm = 0", "at least 1"),
        ("[prices.gpt-4o-audio]\ntext_input_usd_per_1m = 1", "missing"),
        ("tier = 1", "unknown keys"),
        (
            '[tiers.free.gpt-4o-audio]\nrpm = "x"',
            r"limits.toml: tiers.free.gpt-4o-audio.rpm must be a whole number, not 'x'",
        ),
        ("[tiers.free.gpt-4o-audio]\nrpm = 2.7", "rpm must be a whole number, not 2.7"),
        ("default_output_tokens = true", "default_output_tokens must be a whole number"),
    ],
)
def test_a_wrong_limits_file_says_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "limits.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_access_config(path)


def test_since_reads_unix_seconds_iso_dates_and_ages() -> None:
    assert parse_since_s("1735689600") == 1735689600
    assert parse_since_s("2025-01-01") == 1735689600
    assert parse_since_s("2025-01-01T01:00:00+01:00") == 1735689600
    assert parse_since_s("24h", now_s=100_000) == 100_000 - 86_400
    assert parse_since_s("15m", now_s=1000) == 100
    with pytest.raises(ValueError, match="Invalid 'since'"):
        parse_since_s("yesterday")
