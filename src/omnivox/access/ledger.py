"""The usage ledger: one row per request, written before its answer completes.

A row holds the key, the model asked for and the snapshot that answered, when,
the prompt and completion tokens split into text and audio, the outcome and
its cost in US dollars. Statuses: ``completed``, ``cancelled`` (the client
left; billed for what was made), ``failed`` (the server's fault; tokens kept,
cost 0), ``rejected`` (a 4xx: invalid, a model the key may not use, bad
audio; nothing billed), ``rate_limited`` (over a limit, or too large; nothing
billed). A request without a valid key (401) has no key to account it to and
is not recorded; every other request is, refused ones included (about 200
bytes each).

``SqliteLedger`` writes to a WAL-mode SQLite file. With ``synchronous=NORMAL``
(the default) a commit returns once its frames are in the WAL file through
``write()``: they are in the kernel's page cache, so a killed server process
(``kill -9``) loses no committed row; only a power cut or kernel crash can drop
the last commits. ``synchronous=FULL`` fsyncs the WAL on every commit and also
survives those, for about a disk flush per request. Writes run in a worker
thread so an fsync never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

SQLITE_BUSY_TIMEOUT_MS = 5000
SINCE_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
SINCE_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
Status = Literal["completed", "cancelled", "failed", "rejected", "rate_limited"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL,
    completion_id TEXT,
    key_id TEXT NOT NULL,
    key_name TEXT NOT NULL,
    model TEXT NOT NULL,
    model_snapshot TEXT NOT NULL,
    model_class TEXT NOT NULL,
    created_s REAL NOT NULL,
    duration_ms INTEGER NOT NULL,
    status TEXT NOT NULL,
    prompt_text_tokens INTEGER NOT NULL,
    prompt_audio_tokens INTEGER NOT NULL,
    completion_text_tokens INTEGER NOT NULL,
    completion_audio_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_created ON ledger (created_s);
CREATE INDEX IF NOT EXISTS ledger_key_created ON ledger (key_id, created_s);
"""
TOKEN_FIELDS = (
    "prompt_text_tokens",
    "prompt_audio_tokens",
    "completion_text_tokens",
    "completion_audio_tokens",
)


def parse_since_s(since: str, now_s: float | None = None) -> float:
    """Unix seconds from ``1735689600``, ISO 8601 (``2026-01-31``, ``2026-01-31T12:00``,
    UTC unless it says otherwise) or an age (``90s``, ``15m``, ``24h``, ``7d``, ``2w``)."""
    text = since.strip()
    ago = SINCE_AGO.match(text)
    if ago:
        now = time.time() if now_s is None else now_s
        return now - float(ago.group(1)) * SINCE_UNITS_S[ago.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"Invalid 'since': {since!r}. Use unix seconds, an ISO 8601 date or time, "
            "or an age such as 24h or 7d."
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    request_id: str
    completion_id: str | None
    key_id: str  # "" for requests served without a key (loopback, no keys configured)
    key_name: str
    model: str  # as the client asked for it
    model_snapshot: str  # the snapshot that answered
    model_class: str
    created_s: float
    duration_ms: int
    status: str
    prompt_text_tokens: int = 0
    prompt_audio_tokens: int = 0
    completion_text_tokens: int = 0
    completion_audio_tokens: int = 0
    cost_usd: float = 0.0

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def to_row(self) -> tuple[Any, ...]:
        """The values in field order, without ``asdict``'s deep copy."""
        return tuple(getattr(self, name) for name in LEDGER_FIELDS)

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LedgerEntry:
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = record.get(name)
            if value is None or kind == "str | None":
                values[name] = value
            elif kind == "int":
                values[name] = int(value)
            elif kind == "float":
                values[name] = float(value)
            else:
                values[name] = str(value)
        return cls(**values)


LEDGER_FIELDS = tuple(f.name for f in fields(LedgerEntry))


@dataclass(slots=True)
class UsageTotals:
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    prompt_text_tokens: int = 0
    prompt_audio_tokens: int = 0
    completion_text_tokens: int = 0
    completion_audio_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, status: str, n_requests: int, tokens: Iterable[int], cost_usd: float) -> None:
        self.requests += n_requests
        self.statuses[status] = self.statuses.get(status, 0) + n_requests
        for name, n in zip(TOKEN_FIELDS, tokens, strict=True):
            setattr(self, name, getattr(self, name) + n)
        self.cost_usd += cost_usd

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["cost_usd"] = round(self.cost_usd, 9)
        return body


@dataclass(slots=True)
class UsageSummary:
    """Totals over a key (or every key) since a time, overall and per requested model."""

    key_id: str | None
    since_s: float | None
    total: UsageTotals = field(default_factory=UsageTotals)
    models: dict[str, UsageTotals] = field(default_factory=dict)

    def add(
        self, model: str, status: str, n_requests: int, tokens: tuple[int, ...], cost_usd: float
    ) -> None:
        self.total.add(status, n_requests, tokens, cost_usd)
        self.models.setdefault(model, UsageTotals()).add(status, n_requests, tokens, cost_usd)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "usage.summary",
            "key_id": self.key_id,
            "since": self.since_s,
            **self.total.to_json(),
            "models": [{"model": m, **t.to_json()} for m, t in sorted(self.models.items())],
        }


class Ledger(Protocol):
    async def record(self, entry: LedgerEntry) -> None: ...

    async def summarize(self, key_id: str | None, since_s: float | None) -> UsageSummary: ...

    async def entries(
        self, key_id: str | None = None, since_s: float | None = None
    ) -> list[LedgerEntry]: ...

    async def ping(self) -> None:
        """Raise ``ServerError`` when the backend can not be reached."""

    async def close(self) -> None: ...


class SqliteLedger:
    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise ValueError("synchronous must be 'normal' or 'full'")
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._synchronous = synchronous
        self._db.executescript(SCHEMA)
        self._insert = (
            f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) "
            f"VALUES ({', '.join('?' * len(LEDGER_FIELDS))})"
        )

    def record_now(self, entry: LedgerEntry) -> None:
        """Blocking write; returns once the row is committed."""
        with self._lock:
            self._db.execute(self._insert, entry.to_row())

    async def record(self, entry: LedgerEntry) -> None:
        # Without fsync (NORMAL) a WAL commit takes tens of microseconds, less than the
        # hand-off to a worker thread and back; a FULL commit waits for the disk, so it
        # goes to a thread and leaves the event loop free meanwhile.
        if self._synchronous == "normal":
            self.record_now(entry)
        else:
            await asyncio.to_thread(self.record_now, entry)

    def summarize_now(self, key_id: str | None, since_s: float | None) -> UsageSummary:
        where, params = _filters(key_id, since_s)
        query = (
            f"SELECT model, status, COUNT(*), {', '.join(f'SUM({f})' for f in TOKEN_FIELDS)}, "
            f"SUM(cost_usd) FROM ledger {where} GROUP BY model, status"
        )
        with self._lock:
            rows = self._db.execute(query, params).fetchall()
        summary = UsageSummary(key_id, since_s)
        for model, status, n, *rest in rows:
            summary.add(model, status, n, tuple(int(t) for t in rest[:-1]), float(rest[-1]))
        return summary

    async def summarize(self, key_id: str | None, since_s: float | None) -> UsageSummary:
        return await asyncio.to_thread(self.summarize_now, key_id, since_s)

    def entries_now(
        self, key_id: str | None = None, since_s: float | None = None
    ) -> list[LedgerEntry]:
        where, params = _filters(key_id, since_s)
        names = ", ".join(LEDGER_FIELDS)
        with self._lock:
            cursor = self._db.execute(f"SELECT {names} FROM ledger {where} ORDER BY row_id", params)
            columns = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
        return [LedgerEntry.from_record(dict(zip(columns, row, strict=True))) for row in rows]

    async def entries(
        self, key_id: str | None = None, since_s: float | None = None
    ) -> list[LedgerEntry]:
        return await asyncio.to_thread(self.entries_now, key_id, since_s)

    async def ping(self) -> None:
        return None

    def close_now(self) -> None:
        with self._lock:
            self._db.close()

    async def close(self) -> None:
        self.close_now()


def _filters(key_id: str | None, since_s: float | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if key_id is not None:
        clauses.append("key_id = ?")
        params.append(key_id)
    if since_s is not None:
        clauses.append("created_s >= ?")
        params.append(since_s)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
