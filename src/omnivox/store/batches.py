"""Batches and their lines, in SQLite, so that a batch outlives the server that runs it.

A batch is kept as the JSON object the client is shown (``batch``), beside its owner
(the API key's id, "" on a server without keys) and its status. Its lines are rows of
their own: the request as the input file gave it, and, once run, its result (the
output or error file's line) in the same transaction that marks it done, so that a
line whose result is recorded is never run again and a line whose result is not is
run once more after a restart. This module knows nothing of what a line asks.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnivox.store.sqlite import open_private

STORE_FILE = "batches.sqlite3"  # in the data directory
FINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    batch TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_by_owner ON batches (owner, created_at);
CREATE TABLE IF NOT EXISTS batch_lines (
    batch_id TEXT NOT NULL,
    line INTEGER NOT NULL,
    custom_id TEXT NOT NULL,
    request TEXT NOT NULL,
    result TEXT,
    failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, line)
);
"""


@dataclass(frozen=True, slots=True)
class LineResult:
    line: int
    custom_id: str
    result: dict[str, Any] | None  # None: not run
    failed: bool


class BatchStore:
    def __init__(self, path: Path) -> None:
        self._db = open_private(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def save(self, owner: str, batch: dict[str, Any]) -> None:
        """Create or replace a batch's object."""
        with self._lock:
            self._db.execute(
                "INSERT INTO batches (batch_id, owner, created_at, status, batch) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO UPDATE SET "
                "status = excluded.status, batch = excluded.batch",
                (batch["id"], owner, batch["created_at"], batch["status"], json.dumps(batch)),
            )

    def get(self, owner: str, batch_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT batch FROM batches WHERE batch_id = ? AND owner = ?", (batch_id, owner)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def owner_of(self, batch_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT owner FROM batches WHERE batch_id = ?", (batch_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def page(
        self, owner: str, *, after: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The owner's batches, newest first (in the order they were made), after the one
        named ``after``; and whether there are more."""
        with self._lock:
            query = "SELECT batch FROM batches WHERE owner = ?"
            args: list[Any] = [owner]
            if after is not None:
                row = self._db.execute(
                    "SELECT rowid FROM batches WHERE batch_id = ? AND owner = ?", (after, owner)
                ).fetchone()
                if row is None:  # a cursor this owner never had: nothing is after it
                    return [], False
                query += " AND rowid < ?"
                args.append(row[0])
            query += " ORDER BY rowid DESC LIMIT ?"
            rows = self._db.execute(query, (*args, limit + 1)).fetchall()
        batches = [json.loads(r[0]) for r in rows]
        return batches[:limit], len(batches) > limit

    def every(self, limit: int) -> list[tuple[str, dict[str, Any]]]:
        """(owner, batch) of the newest batches of every owner: for operators."""
        with self._lock:
            rows = self._db.execute(
                "SELECT owner, batch FROM batches ORDER BY rowid DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [(str(owner), json.loads(batch)) for owner, batch in rows]

    def unfinished(self) -> list[tuple[str, dict[str, Any]]]:
        """(owner, batch) of every batch not in a final status, oldest first."""
        marks = ",".join("?" for _ in FINAL_STATUSES)
        with self._lock:
            rows = self._db.execute(
                f"SELECT owner, batch FROM batches WHERE status NOT IN ({marks}) ORDER BY rowid",
                tuple(FINAL_STATUSES),
            ).fetchall()
        return [(str(owner), json.loads(batch)) for owner, batch in rows]

    def add_lines(self, batch_id: str, lines: list[tuple[int, str, dict[str, Any]]]) -> None:
        """The input file's lines (number, custom_id, request), once, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO batch_lines (batch_id, line, custom_id, request) "
                    "VALUES (?, ?, ?, ?)",
                    [(batch_id, n, cid, json.dumps(req)) for n, cid, req in lines],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def pending(self, batch_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        """The lines without a result yet, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT line, custom_id, request FROM batch_lines "
                "WHERE batch_id = ? AND result IS NULL ORDER BY line",
                (batch_id,),
            ).fetchall()
        return [(int(n), str(cid), json.loads(req)) for n, cid, req in rows]

    def record(self, batch_id: str, line: int, result: dict[str, Any], failed: bool) -> None:
        """A line's result; a line already recorded keeps its first."""
        with self._lock:
            self._db.execute(
                "UPDATE batch_lines SET result = ?, failed = ? "
                "WHERE batch_id = ? AND line = ? AND result IS NULL",
                (json.dumps(result), int(failed), batch_id, line),
            )

    def results(self, batch_id: str) -> list[LineResult]:
        with self._lock:
            rows = self._db.execute(
                "SELECT line, custom_id, result, failed FROM batch_lines "
                "WHERE batch_id = ? ORDER BY line",
                (batch_id,),
            ).fetchall()
        return [
            LineResult(int(n), str(cid), json.loads(res) if res else None, bool(failed))
            for n, cid, res, failed in rows
        ]
