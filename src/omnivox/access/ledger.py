"""The usage ledger: one row per request, durable from admission to its outcome.

A row holds the key, the model asked for and the snapshot that answered, when,
the prompt and completion tokens split into text and audio, the outcome and
its cost in US dollars. Statuses: ``completed``, ``cancelled`` (the client
left; billed for what was made), ``failed`` (the server's fault; tokens kept,
cost 0), ``rejected`` (a 4xx: invalid, a model the key may not use, bad
audio; nothing billed), ``rate_limited`` (over a limit, or too large; nothing
billed), and ``in_progress`` (admitted, not ended yet; tokens so far, cost 0).
A request without a valid key (401) has no key to account it to and is not
recorded; every other request is, refused ones included (about 200 bytes each).

An admitted request's row is written by ``begin`` before any work, with status
``in_progress``; ``update`` brings its tokens up to date while it runs (only
while it is still in progress), and ``record`` gives it its outcome: the same
row, so summaries count each request once. A request refused before admission
gets its row from ``record`` alone. A server killed mid-answer leaves its rows
``in_progress``; the next server to start closes them (``recover``) as
``failed``: the server's fault, cost 0, the tokens last recorded kept. A server
that starts beside a live one sharing its ledger closes that one's running rows
too; the owner's own ``record`` then replaces them with the true outcome, so a
summary taken in between shows them ``failed`` for a while, never twice.

``SqliteLedger`` writes to a WAL-mode SQLite file. With ``synchronous=NORMAL``
(the default) a commit returns once its frames are in the WAL file through
``write()``: they are in the kernel's page cache, so a killed server process
(``kill -9``) loses no committed row; only a power cut or kernel crash can drop
the last commits. ``synchronous=FULL`` fsyncs the WAL on every commit and also
survives those, for about a disk flush per write (two or more per admitted
request). Writes run in a worker thread so an fsync never blocks the event
loop. The file holds the API keys' hashes too, so it is made ``0600`` (and the
directory it makes ``0700``), whatever the umask.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Protocol

from omnivox.errors import ServerError
from omnivox.store.sqlite import open_private

SINCE_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
SINCE_AGO = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
Status = Literal["completed", "cancelled", "failed", "rejected", "rate_limited", "in_progress"]
IN_PROGRESS: Status = "in_progress"
WRITE_FAILED_MESSAGE = "The server could not write its usage ledger."

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
    cost_usd REAL NOT NULL,
    batch INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS ledger_created ON ledger (created_s);
CREATE INDEX IF NOT EXISTS ledger_key_created ON ledger (key_id, created_s);
CREATE INDEX IF NOT EXISTS ledger_in_progress ON ledger (status) WHERE status = 'in_progress';
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
    batch: int = 0  # 1: a line of a batch, priced at BATCH_PRICE_FACTOR

    def to_record(self) -> dict[str, Any]:
        return asdict(self)

    def to_row(self) -> tuple[Any, ...]:
        """The values in field order, without ``asdict``'s deep copy."""
        return tuple(getattr(self, name) for name in LEDGER_FIELDS)

    def outcome(self) -> tuple[Any, ...]:
        """The values of ``OUTCOME_FIELDS``: what changes while a request runs."""
        return (
            self.completion_id,
            self.duration_ms,
            self.status,
            self.prompt_text_tokens,
            self.prompt_audio_tokens,
            self.completion_text_tokens,
            self.completion_audio_tokens,
            self.cost_usd,
        )

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LedgerEntry:
        kinds = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for name, kind in kinds.items():
            value = record.get(name)
            if value is None and name == "batch":  # a row written before batches
                values[name] = 0
            elif value is None or kind == "str | None":
                values[name] = value
            elif kind == "int":
                values[name] = int(value)
            elif kind == "float":
                values[name] = float(value)
            else:
                values[name] = str(value)
        return cls(**values)


LEDGER_FIELDS = tuple(f.name for f in fields(LedgerEntry))
OUTCOME_FIELDS = ("completion_id", "duration_ms", "status", *TOKEN_FIELDS, "cost_usd")


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
    async def begin(self, entry: LedgerEntry) -> None:
        """The row of an admitted request (status ``in_progress``), durable when this returns."""

    async def update(self, entry: LedgerEntry) -> None:
        """Its tokens so far; nothing when the row is no longer in progress."""

    async def record(self, entry: LedgerEntry) -> None:
        """The request's outcome: replaces its ``begin`` row, or is a row of its own."""

    async def recover(self) -> int:
        """Close the rows left in progress (by servers killed mid-answer) as ``failed``;
        their count. Called once as a server starts, before it begins any row."""

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
        self._lock = threading.Lock()
        self._db = open_private(path)
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._synchronous = synchronous
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(ledger)")}
        if "batch" not in columns:  # a ledger written before batches
            self._db.execute("ALTER TABLE ledger ADD COLUMN batch INTEGER NOT NULL DEFAULT 0")
        self._insert = (
            f"INSERT INTO ledger ({', '.join(LEDGER_FIELDS)}) "
            f"VALUES ({', '.join('?' * len(LEDGER_FIELDS))})"
        )
        # Only what a run changes: the row's key, model and time stay as ``begin`` wrote
        # them, and leaving their indexes untouched halves the cost of the update.
        self._update = (
            f"UPDATE ledger SET {', '.join(f'{name} = ?' for name in OUTCOME_FIELDS)} "
            "WHERE row_id = ?"
        )
        self._open: dict[str, int] = {}  # request id -> row id of the rows begun here

    def begin_now(self, entry: LedgerEntry) -> None:
        with self._lock, _translated():
            cursor = self._db.execute(self._insert, entry.to_row())
            if cursor.lastrowid is not None:
                self._open[entry.request_id] = cursor.lastrowid

    def update_now(self, entry: LedgerEntry) -> None:
        with self._lock, _translated():
            row_id = self._open.get(entry.request_id)
            if row_id is not None:  # a row ``recover`` closed keeps its status until ``record``
                self._db.execute(
                    self._update + f" AND status = '{IN_PROGRESS}'", (*entry.outcome(), row_id)
                )

    def record_now(self, entry: LedgerEntry) -> None:
        """Blocking write; returns once the row is committed."""
        with self._lock, _translated():
            row_id = self._open.pop(entry.request_id, None)
            if row_id is None:
                self._db.execute(self._insert, entry.to_row())
            else:  # whatever its status now: a row another server closed gets its outcome
                self._db.execute(self._update, (*entry.outcome(), row_id))

    def recover_now(self) -> int:
        with self._lock, _translated():
            cursor = self._db.execute(
                f"UPDATE ledger SET status = 'failed', cost_usd = 0 WHERE status = '{IN_PROGRESS}'"
            )
        return cursor.rowcount

    async def begin(self, entry: LedgerEntry) -> None:
        await self._write(self.begin_now, entry)

    async def update(self, entry: LedgerEntry) -> None:
        await self._write(self.update_now, entry)

    async def record(self, entry: LedgerEntry) -> None:
        await self._write(self.record_now, entry)

    async def recover(self) -> int:
        return await asyncio.to_thread(self.recover_now)

    async def _write(self, write: Callable[[LedgerEntry], None], entry: LedgerEntry) -> None:
        # Without fsync (NORMAL) a WAL commit takes tens of microseconds, less than the
        # hand-off to a worker thread and back; a FULL commit waits for the disk, so it
        # goes to a thread and leaves the event loop free meanwhile.
        if self._synchronous == "normal":
            write(entry)
        else:
            await asyncio.to_thread(write, entry)

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


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """A failed write (a full disk, a locked file) as the error the client sees."""
    try:
        yield
    except sqlite3.Error as exc:
        raise ServerError(WRITE_FAILED_MESSAGE) from exc


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
