"""Stored responses of the Responses API: each visible to its owner alone, until it expires.

A row of ``<data_dir>/responses.sqlite3`` holds one response object (JSON, as it was
answered), the input items it was given (each with its id) and the response it
continued. ``conversation`` walks that chain back to its start and gives every item
in order (each response's input items, then its output items), which is what a
request naming ``previous_response_id`` continues. A response of another owner, or
an expired one, is answered exactly as one that does not exist (``None``).

``put`` only queues the row: the store's writer thread commits it, with any others
queued meanwhile, so storing costs an answer nothing it would wait for. Every read
first waits for the queued rows to be committed, so a response is found as soon as
``put`` has returned. Commits are not flushed to disk one by one (WAL with
``synchronous=NORMAL``): a crash of this process loses nothing committed; the machine
losing power can lose the last responses, as can a crash in the moment between
``put`` and its commit.

One connection behind a lock serves every thread; callers on an event loop call the
reads from a worker thread. Expired rows are removed when the store opens and then at
most once a minute as responses are stored. The store knows nothing of HTTP, of who
the owners are, or of what the items mean.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnivox.store.sqlite import open_private

INDEX_NAME = "responses.sqlite3"
PURGE_INTERVAL_S = 60
MAX_CHAIN = 10_000  # a chain longer than this is cut (no loop can form, but be sure)
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    previous_id TEXT,
    body TEXT NOT NULL,
    input_items TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_by_expiry ON responses (expires_at);
"""


log = logging.getLogger(__name__)

_Row = tuple[str, dict[str, Any], list[dict[str, Any]], str | None, int]


@dataclass(frozen=True)
class StoredResponse:
    response_id: str
    owner: str
    previous_id: str | None
    body: dict[str, Any]
    input_items: list[dict[str, Any]]


class ResponseStore:
    def __init__(self, data_dir: Path) -> None:
        self._db = open_private(data_dir / INDEX_NAME)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._last_purge_s = 0
        self.delete_expired(int(time.time()))
        self._queue: queue.Queue[_Row | None] = queue.Queue()
        self._writer = threading.Thread(
            target=self._write_queued, name="omnivox-responses-writer", daemon=True
        )
        self._writer.start()

    def put(
        self,
        owner: str,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        previous_id: str | None,
        expires_at: int,
    ) -> None:
        """Keep ``body`` (a response object with ``id`` and ``created_at``; neither it
        nor ``input_items`` may change after this call). Returns at once."""
        self._queue.put((owner, body, input_items, previous_id, expires_at))

    def flush(self) -> None:
        """Return once every response queued so far is committed."""
        self._queue.join()

    def _write_queued(self) -> None:
        while (row := self._queue.get()) is not None:
            rows = [row]
            while True:  # whatever else is queued joins the same commit
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)  # the end, after these rows
                    self._queue.task_done()
                    break
                rows.append(more)
            try:
                self._commit(rows)
            except Exception:
                log.exception("could not store %d responses", len(rows))
            finally:
                for _ in rows:
                    self._queue.task_done()
        self._queue.task_done()

    def _commit(self, rows: list[_Row]) -> None:
        values = [
            (
                body["id"],
                owner,
                int(body["created_at"]),
                expires_at,
                previous_id,
                json.dumps(body),
                json.dumps(items),
            )
            for owner, body, items, previous_id, expires_at in rows
        ]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", values
            )
            self._db.execute("COMMIT")
        now_s = int(time.time())
        if now_s - self._last_purge_s >= PURGE_INTERVAL_S:
            self.delete_expired(now_s)

    def get(self, owner: str, response_id: str) -> StoredResponse | None:
        self.flush()
        with self._lock:
            row = self._db.execute(
                "SELECT id, owner, previous_id, body, input_items FROM responses "
                "WHERE id = ? AND owner = ? AND expires_at > ?",
                (response_id, owner, int(time.time())),
            ).fetchone()
        if row is None:
            return None
        return StoredResponse(row[0], row[1], row[2], json.loads(row[3]), json.loads(row[4]))

    def delete(self, owner: str, response_id: str) -> bool:
        self.flush()
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM responses WHERE id = ? AND owner = ? AND expires_at > ?",
                (response_id, owner, int(time.time())),
            )
        return cursor.rowcount > 0

    def conversation(self, owner: str, response_id: str) -> list[dict[str, Any]] | None:
        """Every item of the chain that ends with ``response_id``, oldest first (None when
        that response is not there). A response earlier in the chain that was deleted or
        has expired ends the walk: the conversation starts after it."""
        chain: list[StoredResponse] = []
        next_id: str | None = response_id
        while next_id is not None and len(chain) < MAX_CHAIN:
            stored = self.get(owner, next_id)
            if stored is None:
                break
            chain.append(stored)
            next_id = stored.previous_id
        if not chain:
            return None
        items: list[dict[str, Any]] = []
        for stored in reversed(chain):
            items += stored.input_items
            items += stored.body.get("output", [])
        return items

    def delete_expired(self, now_s: int) -> None:
        self._last_purge_s = now_s
        with self._lock:
            self._db.execute("DELETE FROM responses WHERE expires_at <= ?", (now_s,))

    def close(self) -> None:
        """Commit what is queued, then close."""
        self._queue.put(None)
        self._writer.join()
        with self._lock:
            self._db.close()
