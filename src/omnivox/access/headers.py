"""OpenAI's rate-limit and retry headers, with durations written the way Go writes them.

OpenAI reports reset times as Go ``time.Duration`` strings (``6m0s``, ``1s``,
``17ms``, ``4m12.172s``); omnivox rounds them up to whole milliseconds, so a
client that waits exactly the time it was told is admitted. This module only
formats: which meter is reported, and its numbers, come from ``limiter``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from omnivox.access.limiter import Meter

MS_PER_S = 1000
MS_PER_MIN = 60 * MS_PER_S
MS_PER_H = 60 * MS_PER_MIN
REQUEST_METERS = ("rpm", "rpd")
TOKEN_METERS = ("tpm",)


def ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (after dropping float noise below a nanosecond)."""
    return max(0, math.ceil(round(seconds * MS_PER_S, 6)))


def go_duration(seconds: float) -> str:
    """``0s``, ``17ms``, ``1s``, ``1.5s``, ``6m0s``, ``4m12.172s``, ``23h18m29.144s``."""
    ms = ceil_ms(seconds)
    if ms == 0:
        return "0s"
    if ms < MS_PER_S:
        return f"{ms}ms"
    hours, rest = divmod(ms, MS_PER_H)
    minutes, rest = divmod(rest, MS_PER_MIN)
    whole_s, frac_ms = divmod(rest, MS_PER_S)
    secs = str(whole_s) + (f".{frac_ms:03d}".rstrip("0") if frac_ms else "")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def reported(meters: Sequence[Meter], names: Sequence[str]) -> Meter | None:
    """The meter reported for a kind: of RPM and RPD, the one with fewer remaining (RPM on ties)."""
    candidates = [m for m in meters if m.name in names]
    if not candidates:
        return None
    return min(candidates, key=lambda m: (m.remaining, names.index(m.name)))


def rate_limit_headers(meters: Sequence[Meter]) -> dict[str, str]:
    """The six ``x-ratelimit-*`` headers, for the kinds (requests, tokens) that have a limit."""
    headers: dict[str, str] = {}
    for kind, names in (("requests", REQUEST_METERS), ("tokens", TOKEN_METERS)):
        meter = reported(meters, names)
        if meter is None:
            continue
        headers[f"x-ratelimit-limit-{kind}"] = str(meter.limit)
        headers[f"x-ratelimit-remaining-{kind}"] = str(meter.remaining)
        headers[f"x-ratelimit-reset-{kind}"] = go_duration(meter.reset_s)
    return headers


def rate_limit_states(meters: Sequence[Meter]) -> list[dict[str, float | int | str]]:
    """The limits as the Realtime API's ``rate_limits.updated`` lists them: for requests
    and tokens, ``name``, ``limit``, ``remaining`` and ``reset_seconds``."""
    states: list[dict[str, float | int | str]] = []
    for kind, names in (("requests", REQUEST_METERS), ("tokens", TOKEN_METERS)):
        meter = reported(meters, names)
        if meter is not None:
            states.append(
                {
                    "name": kind,
                    "limit": meter.limit,
                    "remaining": meter.remaining,
                    "reset_seconds": round(meter.reset_s, 3),
                }
            )
    return states


def retry_headers(retry_after_s: float) -> dict[str, str]:
    """``retry-after`` in whole seconds (at least 1, per the spec) and ``retry-after-ms``."""
    ms = max(1, ceil_ms(retry_after_s))
    return {"retry-after": str(max(1, math.ceil(ms / MS_PER_S))), "retry-after-ms": str(ms)}
