"""Stored responses of the Responses API: each visible to its owner alone, until it expires.

A row of ``<data_dir>/responses.sqlite3`` holds one response object (JSON, as it was
answered), the input items it was given (each with its id) and the response it
continued. ``conversation`` walks that chain back to its start and gives every item
in order (each response's input items, then its output items), which is what a
request naming ``previous_response_id`` continues. A response of another owner, or
an expired one, is answered exactly as one that does not exist (``None``).

One connection behind a lock serves every thread; callers on an event loop call it
from a worker thread. Expired rows are removed when the store opens and then at most
once a minute as responses are stored. The store knows nothing of HTTP, of who the
owners are, or of what the items mean.
"""

from __future__ import annotations

import json
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
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._last_purge_s = 0
        self.delete_expired(int(time.time()))

    def put(
        self,
        owner: str,
        body: dict[str, Any],
        input_items: list[dict[str, Any]],
        previous_id: str | None,
        expires_at: int,
    ) -> None:
        """Keep ``body`` (a response object with ``id`` and ``created_at``)."""
        row = (
            body["id"],
            owner,
            int(body["created_at"]),
            expires_at,
            previous_id,
            json.dumps(body),
            json.dumps(input_items),
        )
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        now_s = int(time.time())
        if now_s - self._last_purge_s >= PURGE_INTERVAL_S:
            self.delete_expired(now_s)

    def get(self, owner: str, response_id: str) -> StoredResponse | None:
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
        with self._lock:
            self._db.close()
