"""The usage ledger in SQLite and in Redis: rows, filters and the summary both report."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnivox.access.ledger import Ledger, LedgerEntry, SqliteLedger
from omnivox.access.redis_ledger import RedisLedger


def entry(key_id: str, model: str, created_s: float, status: str = "completed") -> LedgerEntry:
    return LedgerEntry(
        request_id="req_1",
        completion_id="chatcmpl-1" if status == "completed" else None,
        key_id=key_id,
        key_name=key_id.upper(),
        model=model,
        model_snapshot="omnivox-audio-2026-11-22",
        model_class="gpt-4o-mini-audio",
        created_s=created_s,
        duration_ms=12,
        status=status,
        prompt_text_tokens=10,
        prompt_audio_tokens=20,
        completion_text_tokens=30,
        completion_audio_tokens=40,
        cost_usd=0.25,
    )


async def check_ledger(ledger: Ledger) -> None:
    rows = [
        entry("a", "gpt-4o-mini-audio-preview", 100.0),
        entry("a", "gpt-audio-mini", 200.0),
        entry("a", "gpt-audio-mini", 300.0, status="cancelled"),
        entry("b", "gpt-audio-mini", 300.0),
    ]
    for row in rows:
        await ledger.record(row)
    assert await ledger.entries() == rows
    everyone = await ledger.summarize(None, None)
    assert everyone.total.requests == 4
    assert everyone.total.completion_audio_tokens == 160
    assert everyone.total.cost_usd == pytest.approx(1.0)
    mine = (await ledger.summarize("a", 150.0)).to_json()
    assert mine["requests"] == 2 and mine["statuses"] == {"completed": 1, "cancelled": 1}
    assert [m["model"] for m in mine["models"]] == ["gpt-audio-mini"]
    assert mine["prompt_text_tokens"] == 20 and mine["cost_usd"] == pytest.approx(0.5)
    await ledger.close()


async def test_the_sqlite_ledger(tmp_path: Path) -> None:
    await check_ledger(SqliteLedger(tmp_path / "access.sqlite3"))
    reopened = SqliteLedger(tmp_path / "access.sqlite3", synchronous="full")
    assert len(reopened.entries_now("a")) == 3
    await reopened.close()


async def test_the_redis_ledger(redis_url: str) -> None:
    await check_ledger(RedisLedger(redis_url))
