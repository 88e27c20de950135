"""The usage ledger in SQLite and in Redis: rows, filters and the summary both report;
rows in progress, and the ones a killed server leaves."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from omnivox.access.ledger import Ledger, LedgerEntry, SqliteLedger
from omnivox.access.redis_ledger import RedisLedger

REQUEST_NUMBERS = itertools.count(1)


def entry(key_id: str, model: str, created_s: float, status: str = "completed") -> LedgerEntry:
    return LedgerEntry(
        request_id=f"req_{next(REQUEST_NUMBERS)}",
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


async def check_rows_in_progress(ledger: Ledger, reopen: Callable[[], Ledger]) -> None:
    """``ledger`` is a server that gets killed mid-answer; ``reopen`` the one started next."""
    started = entry("a", "gpt-audio-mini", 100.0, status="in_progress")
    started = replace(started, prompt_text_tokens=0, prompt_audio_tokens=0, cost_usd=0.0)
    started = replace(started, completion_text_tokens=0, completion_audio_tokens=0)
    await ledger.begin(started)
    assert await ledger.entries() == [started]
    assert (await ledger.summarize(None, None)).to_json()["statuses"] == {"in_progress": 1}
    so_far = replace(started, prompt_text_tokens=10, completion_audio_tokens=40, duration_ms=900)
    await ledger.update(so_far)
    assert await ledger.entries() == [so_far]
    done = replace(so_far, status="completed", completion_text_tokens=30, cost_usd=0.25)
    await ledger.record(done)
    await ledger.update(so_far)  # a late update does not reopen an ended row
    assert await ledger.entries() == [done]

    cut = replace(started, request_id="req_cut", created_s=200.0)
    cut_so_far = replace(cut, prompt_text_tokens=7, completion_text_tokens=3)
    await ledger.begin(cut)
    await ledger.update(cut_so_far)
    next_server = reopen()  # the first server was killed: its row stays in progress
    summary = (await next_server.summarize(None, None)).to_json()
    assert summary["requests"] == 2, "a row in progress is counted once"
    assert summary["statuses"] == {"completed": 1, "in_progress": 1}
    assert summary["completion_text_tokens"] == 33
    assert await next_server.recover() == 1
    assert await next_server.recover() == 0
    failed = replace(cut_so_far, status="failed", cost_usd=0.0)
    assert await next_server.entries() == [done, failed]
    summary = (await next_server.summarize(None, 150.0)).to_json()
    assert summary["statuses"] == {"failed": 1}
    assert summary["prompt_text_tokens"] == 7 and summary["cost_usd"] == 0

    # It was not killed after all (a live server sharing the ledger): its outcome wins.
    await ledger.update(replace(cut_so_far, completion_text_tokens=5))  # ignored: closed
    assert await next_server.entries() == [done, failed]
    outcome = replace(cut_so_far, status="cancelled", completion_text_tokens=6, cost_usd=0.1)
    await ledger.record(outcome)
    assert await next_server.entries() == [done, outcome]
    summary = (await next_server.summarize(None, None)).to_json()
    assert summary["requests"] == 2 and summary["statuses"] == {"completed": 1, "cancelled": 1}
    await ledger.close()
    await next_server.close()


async def test_the_sqlite_ledger(tmp_path: Path) -> None:
    await check_ledger(SqliteLedger(tmp_path / "access.sqlite3"))
    reopened = SqliteLedger(tmp_path / "access.sqlite3", synchronous="full")
    assert len(reopened.entries_now("a")) == 3
    await reopened.close()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
async def test_sqlite_rows_in_progress_and_after_a_crash(tmp_path: Path, synchronous: str) -> None:
    path = tmp_path / "access.sqlite3"
    await check_rows_in_progress(
        SqliteLedger(path, synchronous), lambda: SqliteLedger(path, synchronous)
    )


async def test_the_redis_ledger(redis_url: str) -> None:
    await check_ledger(RedisLedger(redis_url))


async def test_redis_rows_in_progress_and_after_a_crash(redis_url: str) -> None:
    await check_rows_in_progress(RedisLedger(redis_url), lambda: RedisLedger(redis_url))


def test_a_ledger_written_before_batches_gains_the_batch_column(tmp_path: Path) -> None:
    import sqlite3

    from omnivox.access.ledger import SCHEMA

    path = tmp_path / "access.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(",\n    batch INTEGER NOT NULL DEFAULT 0", ""))
    old.execute(
        "INSERT INTO ledger (request_id, key_id, key_name, model, model_snapshot, model_class, "
        "created_s, duration_ms, status, prompt_text_tokens, prompt_audio_tokens, "
        "completion_text_tokens, completion_audio_tokens, cost_usd) "
        "VALUES ('req_old', 'k', 'n', 'm', 's', 'c', 1.0, 5, 'completed', 1, 0, 1, 0, 0.5)"
    )
    old.commit()
    old.close()
    ledger = SqliteLedger(path)
    entry = LedgerEntry("req_new", None, "k", "n", "m", "s", "c", 2.0, 5, "completed", batch=1)
    ledger.record_now(entry)
    rows = {e.request_id: e for e in ledger.entries_now()}
    ledger.close_now()
    assert (rows["req_old"].batch, rows["req_new"].batch) == (0, 1)


def test_a_redis_record_without_the_batch_field_is_not_a_batch_line() -> None:
    record = {
        "request_id": "req_old",
        "completion_id": None,
        "key_id": "k",
        "key_name": "n",
        "model": "m",
        "model_snapshot": "s",
        "model_class": "c",
        "created_s": "1.0",
        "duration_ms": "5",
        "status": "completed",
    }
    assert LedgerEntry.from_record(record).batch == 0
