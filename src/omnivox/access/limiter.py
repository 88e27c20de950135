"""Rate limits as draining meters, the ``Limiter`` Protocol, and the in-process backend.

Each limit (RPM, RPD, TPM) of one key and model class is a meter: ``used``
rises by what a request is charged and drains continuously at
``limit / window`` (a leaky bucket). A charge is admitted when ``used +
charge <= limit`` for every limit it charges, and then applied to all of them
at once; a refusal charges nothing. This is exact at the edges (a 3 RPM key
gets 3 requests, then one more every 20 s) with no fixed windows to straddle,
and needs only a level and a timestamp per meter, so the Redis backend can do
the same arithmetic in one atomic script. ``remaining`` is ``limit - used``;
``reset`` the time until ``used`` drains to zero; a refused charge may retry
after ``(used + charge - limit) / rate``.

A limit is only checked by a charge that uses it. A request's admission
charges one request and its tokens at once (its prompt estimate and maximum
output); without a maximum the token charge is flexible: as much of the
default output as the meter has left, never less than the prompt. Token
corrections at the end (``adjust_tokens``) are never refused and may push
``used`` past the limit, which then delays later requests: actual usage is
what counts.

``MemoryLimiter`` holds meters in this process only: N processes without
Redis enforce N times the limit. It is called on the event loop and never
awaits inside a decision, so decisions are atomic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from omnivox.access.tiers import Limits

METERS = ("rpm", "rpd", "tpm")
WINDOW_S = {"rpm": 60.0, "rpd": 86_400.0, "tpm": 60.0}
FLOAT_SLACK = 1e-9  # so that drained levels like 2.9999999999 still read as 3 used


@dataclass(frozen=True, slots=True)
class Meter:
    """One limit's state right after a decision."""

    name: str  # rpm | rpd | tpm
    limit: int
    used: float

    @property
    def rate_per_s(self) -> float:
        return self.limit / WINDOW_S[self.name]

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.limit - self.used + FLOAT_SLACK))

    @property
    def used_whole(self) -> int:
        return max(0, math.ceil(self.used - FLOAT_SLACK))

    @property
    def reset_s(self) -> float:
        return max(0.0, self.used) / self.rate_per_s

    def wait_s(self, charge: int) -> float:
        """How long until ``charge`` more fits (0 if it fits now)."""
        return max(0.0, self.used + charge - self.limit) / self.rate_per_s


@dataclass(frozen=True, slots=True)
class Decision:
    admitted: bool
    meters: tuple[Meter, ...]
    refused_by: Meter | None = None  # of the refusing meters, the one with the longest wait
    requested: int = 0  # what the refusing meter was asked to take
    retry_after_s: float = 0.0
    tokens: int = 0  # the tokens charged (admitted) or asked for (refused)


class Limiter(Protocol):
    async def acquire(
        self,
        bucket: str,
        limits: Limits,
        n_requests: int,
        n_tokens: int,
        *,
        min_tokens: int | None = None,
    ) -> Decision:
        """Charge ``n_requests`` and ``n_tokens`` at once, or nothing. With ``min_tokens``
        the token charge may shrink to what the TPM meter has left, down to
        ``min_tokens`` (``Decision.tokens`` says what was taken)."""

    async def adjust_tokens(self, bucket: str, limits: Limits, delta_tokens: int) -> None: ...

    async def ping(self) -> None:
        """Raise ``ServerError`` when the backend can not be reached."""

    async def close(self) -> None: ...


def limit_values(limits: Limits) -> tuple[int | None, int | None, int | None]:
    return (limits.rpm, limits.rpd, limits.tpm)


def charges(n_requests: int, n_tokens: int) -> tuple[int, int, int]:
    return (n_requests, n_requests, n_tokens)


def drained(used: float, limit: int | None, window_s: float, elapsed_s: float) -> float:
    if limit is None:
        return 0.0
    return max(0.0, used - elapsed_s * limit / window_s)


def fits(used: float, limit: int | None, charge: int) -> bool:
    return limit is None or charge <= 0 or used + charge <= limit + FLOAT_SLACK


def decide(
    limits: Limits,
    used_before: list[float],
    n_requests: int,
    n_tokens: int,
    admitted: bool | None = None,
) -> Decision:
    """The decision for levels read just before it; ``admitted`` is a backend's own verdict."""
    costs = charges(n_requests, n_tokens)
    present = [
        (name, lim, used, cost)
        for name, lim, used, cost in zip(
            METERS, limit_values(limits), used_before, costs, strict=True
        )
        if lim is not None
    ]
    if admitted is None:
        admitted = all(fits(used, lim, cost) for _, lim, used, cost in present)
    if admitted:
        meters = tuple(Meter(n, lim, u + c) for n, lim, u, c in present)
        return Decision(True, meters, tokens=n_tokens)
    meters = tuple(Meter(n, lim, u) for n, lim, u, _ in present)
    charged = [
        (m.wait_s(c), m, c) for m, (_, _, _, c) in zip(meters, present, strict=True) if c > 0
    ]
    wait_s, meter, cost = max(charged, key=lambda r: r[0])
    return Decision(False, meters, meter, cost, wait_s, tokens=n_tokens)


def flexible_tokens(used: float, limit: int | None, n_tokens: int, min_tokens: int | None) -> int:
    """The token charge: ``n_tokens``, or what the meter has left down to ``min_tokens``."""
    if min_tokens is None or limit is None or n_tokens <= 0:
        return n_tokens
    left = math.floor(limit - used + FLOAT_SLACK)
    return n_tokens if n_tokens <= left else max(min_tokens, left)


@dataclass(slots=True)
class _Levels:
    at_s: float
    used: list[float]


class MemoryLimiter:
    """Meters in a dict of this process; ``clock`` is injectable for tests."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._levels: dict[str, _Levels] = {}

    def _read(self, bucket: str, limits: Limits) -> _Levels:
        now_s = self._clock()
        levels = self._levels.get(bucket)
        if levels is None:
            levels = self._levels[bucket] = _Levels(now_s, [0.0, 0.0, 0.0])
        elapsed_s = max(0.0, now_s - levels.at_s)
        levels.used = [
            drained(u, lim, WINDOW_S[name], elapsed_s)
            for u, lim, name in zip(levels.used, limit_values(limits), METERS, strict=True)
        ]
        levels.at_s = now_s
        return levels

    async def acquire(
        self,
        bucket: str,
        limits: Limits,
        n_requests: int,
        n_tokens: int,
        *,
        min_tokens: int | None = None,
    ) -> Decision:
        levels = self._read(bucket, limits)
        n_tokens = flexible_tokens(levels.used[2], limits.tpm, n_tokens, min_tokens)
        decision = decide(limits, levels.used, n_requests, n_tokens)
        if decision.admitted:
            costs = charges(n_requests, n_tokens)
            levels.used = [u + c for u, c in zip(levels.used, costs, strict=True)]
        return decision

    async def adjust_tokens(self, bucket: str, limits: Limits, delta_tokens: int) -> None:
        levels = self._read(bucket, limits)
        if limits.tpm is not None:
            levels.used[2] = max(0.0, levels.used[2] + delta_tokens)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._levels.clear()
