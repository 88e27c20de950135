"""The draining meters, in-process (with a fake clock) and in Redis (atomic across clients)."""

from __future__ import annotations

import asyncio

import pytest

from omnivox.access.limiter import MemoryLimiter
from omnivox.access.redis_limiter import RedisLimiter
from omnivox.access.tiers import Limits


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_a_3_rpm_key_gets_3_then_one_more_every_20_s() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(rpm=3)
    admitted = [(await limiter.acquire("k", limits, 1, 0)).admitted for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    refused = await limiter.acquire("k", limits, 1, 0)
    assert refused.refused_by is not None and refused.refused_by.name == "rpm"
    assert (refused.refused_by.used_whole, refused.requested) == (3, 1)
    assert refused.retry_after_s == pytest.approx(20.0)
    clock.now_s += 19.9
    assert not (await limiter.acquire("k", limits, 1, 0)).admitted
    clock.now_s += 0.1
    assert (await limiter.acquire("k", limits, 1, 0)).admitted
    assert not (await limiter.acquire("k", limits, 1, 0)).admitted


async def test_a_refusal_charges_nothing_and_every_limit_must_fit() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(rpm=100, rpd=2, tpm=1000)
    assert (await limiter.acquire("k", limits, 1, 0)).admitted
    assert (await limiter.acquire("k", limits, 1, 0)).admitted
    third = await limiter.acquire("k", limits, 1, 0)
    assert not third.admitted and third.refused_by is not None
    assert third.refused_by.name == "rpd"
    assert third.retry_after_s == pytest.approx(86_400 / 2)
    rpm = next(m for m in third.meters if m.name == "rpm")
    assert rpm.remaining == 98  # the two admitted; the refusal is not counted


async def test_token_charges_are_corrected_to_actual_usage() -> None:
    clock = Clock()
    limiter = MemoryLimiter(clock)
    limits = Limits(tpm=600)  # drains 10 tokens/s
    first = await limiter.acquire("k", limits, 0, 500)
    assert first.admitted and first.meters[0].remaining == 100
    second = await limiter.acquire("k", limits, 0, 200)
    assert not second.admitted and second.refused_by is not None
    assert second.refused_by.name == "tpm" and second.requested == 200
    assert second.retry_after_s == pytest.approx(10.0)
    await limiter.adjust_tokens("k", limits, 20 - 500)  # it used 20 of the 500 charged
    assert (await limiter.acquire("k", limits, 0, 200)).admitted
    await limiter.adjust_tokens("k", limits, 1000)  # usage past the charge still counts
    over = await limiter.acquire("k", limits, 0, 1)
    assert not over.admitted and over.meters[0].remaining == 0


async def test_meters_are_per_bucket_and_keep_only_limited_kinds() -> None:
    limiter = MemoryLimiter(Clock())
    a = await limiter.acquire("a:mini", Limits(rpm=1), 1, 50)
    b = await limiter.acquire("b:mini", Limits(rpm=1), 1, 50)
    assert a.admitted and b.admitted
    assert [m.name for m in a.meters] == ["rpm"]


async def test_redis_meters_admit_exactly_the_limit_under_concurrency(redis_url: str) -> None:
    limiters = [RedisLimiter(redis_url) for _ in range(4)]  # four "processes"
    limits = Limits(rpm=10, tpm=100_000)
    decisions = await asyncio.gather(
        *(limiters[i % 4].acquire("key_x:mini", limits, 1, 0) for i in range(60))
    )
    assert sum(d.admitted for d in decisions) == 10
    refused = [d for d in decisions if not d.admitted]
    assert all(d.refused_by is not None and d.refused_by.name == "rpm" for d in refused)
    assert 5.0 < refused[0].retry_after_s <= 6.0  # one slot every 6 s
    for limiter in limiters:
        await limiter.close()


async def test_redis_token_charges_and_corrections(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    limits = Limits(rpm=100, tpm=600)
    first = await limiter.acquire("key_y:full", limits, 0, 500)
    tpm = next(m for m in first.meters if m.name == "tpm")
    assert first.admitted and tpm.remaining == 100
    second = await limiter.acquire("key_y:full", limits, 0, 200)
    assert not second.admitted and second.refused_by is not None
    assert second.refused_by.name == "tpm"
    assert 9.5 < second.retry_after_s <= 10.0
    await limiter.adjust_tokens("key_y:full", limits, -480)
    assert (await limiter.acquire("key_y:full", limits, 0, 200)).admitted
    await limiter.close()


async def _flexible_charges(limiter: MemoryLimiter | RedisLimiter, bucket: str) -> None:
    limits = Limits(rpm=100, tpm=1000)
    first = await limiter.acquire(bucket, limits, 1, 7 + 2048, min_tokens=7)
    assert first.admitted and first.tokens == 1000  # all the minute had, not 2,055
    await limiter.adjust_tokens(bucket, limits, 9 - 1000)  # it used 9
    second = await limiter.acquire(bucket, limits, 1, 7 + 2048, min_tokens=7)
    # what was left beside the 9 (Redis's meter drains by its own clock meanwhile)
    assert second.admitted and 991 <= second.tokens <= 993
    third = await limiter.acquire(bucket, limits, 1, 7 + 2048, min_tokens=7)
    assert not third.admitted and third.refused_by is not None
    assert third.refused_by.name == "tpm" and third.requested == 7  # the least it needed
    rpm = next(m for m in third.meters if m.name == "rpm")
    assert rpm.used_whole == 2  # a refusal charges nothing
    fixed = await limiter.acquire(bucket + "-b", limits, 1, 1500)
    assert not fixed.admitted  # without min_tokens a charge is all or nothing


async def test_a_flexible_token_charge_takes_what_the_minute_has_left() -> None:
    await _flexible_charges(MemoryLimiter(Clock()), "k")


async def test_a_flexible_token_charge_in_redis(redis_url: str) -> None:
    limiter = RedisLimiter(redis_url)
    await _flexible_charges(limiter, "key_z:mini")
    await limiter.close()
