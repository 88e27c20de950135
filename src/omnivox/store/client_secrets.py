"""The Realtime API's client secrets (ephemeral keys, ``ek_...``), in SQLite, until they expire.

A row of ``<data_dir>/client_secrets.sqlite3`` holds a secret's SHA-256 (the secret
itself is never written down: a copy of the file lets nobody in), the id of the API
key that minted it ("" on a server without keys), the session configuration it was
minted with (JSON) and when it expires (unix seconds). An expired secret is answered
exactly as one that was never minted (``None``); expired rows are removed when the
store opens and then at most once a minute as secrets are minted or looked up.

A secret opens any number of sessions until it expires (OpenAI's rule), so a lookup
does not use it up. One connection behind a lock serves every thread. ``clock`` is
the store's time (tests move it). The store knows nothing of keys, sessions or HTTP.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omnivox.store.sqlite import open_private

STORE_FILE = "client_secrets.sqlite3"  # in the data directory
SECRET_PREFIX = "ek_"
SECRET_BYTES = 16  # 128 random bits, written as 32 hex digits (OpenAI's ek_ values look so)
PURGE_INTERVAL_S = 60
SCHEMA = """
CREATE TABLE IF NOT EXISTS client_secrets (
    hash TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    session TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS client_secrets_by_expiry ON client_secrets (expires_at);
"""


@dataclass(frozen=True, slots=True)
class ClientSecret:
    owner: str  # the minting key's id; "" when minted without keys
    session: dict[str, Any]
    expires_at: int


def secret_hash(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


class ClientSecretStore:
    def __init__(self, data_dir: Path, clock: Callable[[], float] = time.time) -> None:
        self._db = open_private(data_dir / STORE_FILE)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self.clock = clock
        self._last_purge_s = 0
        self.delete_expired()

    def now_s(self) -> int:
        return int(self.clock())

    def mint(self, owner: str, session: dict[str, Any], expires_at: int) -> str:
        """A new secret for ``owner`` and ``session``, valid until ``expires_at``."""
        value = SECRET_PREFIX + secrets.token_hex(SECRET_BYTES)
        self.put(value, owner, session, expires_at)
        return value

    def put(self, value: str, owner: str, session: dict[str, Any], expires_at: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO client_secrets VALUES (?, ?, ?, ?)",
                (secret_hash(value), owner, json.dumps(session), expires_at),
            )
        self._purge_now_and_then()

    def find(self, value: str) -> ClientSecret | None:
        """The secret ``value`` names, if it was minted and has not expired."""
        self._purge_now_and_then()
        with self._lock:
            row = self._db.execute(
                "SELECT owner, session, expires_at FROM client_secrets "
                "WHERE hash = ? AND expires_at > ?",
                (secret_hash(value), self.now_s()),
            ).fetchone()
        if row is None:
            return None
        return ClientSecret(row[0], json.loads(row[1]), row[2])

    def count(self) -> int:
        """Rows kept, expired ones not yet removed included."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM client_secrets").fetchone()[0])

    def _purge_now_and_then(self) -> None:
        if self.now_s() - self._last_purge_s >= PURGE_INTERVAL_S:
            self.delete_expired()

    def delete_expired(self) -> None:
        now_s = self.now_s()
        self._last_purge_s = now_s
        with self._lock:
            self._db.execute("DELETE FROM client_secrets WHERE expires_at <= ?", (now_s,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
