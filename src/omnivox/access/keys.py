"""API keys: making them, storing only their hashes, and checking them in constant time.

A key is ``sk-`` and 32 random bytes (urlsafe base64), shown once when it is
created and never stored: the store keeps its SHA-256 and a hint of its last
four characters. SHA-256 without salt or stretching is enough here, unlike for
passwords: the secret has 256 bits of entropy, so neither a dictionary nor
brute force can invert the hash, and a slow KDF would only add its cost to
every request. Lookup goes by the hash (an index, whose timing can reveal
nothing useful without a SHA-256 preimage), then the stored and computed
hashes are compared with ``hmac.compare_digest``.

Keys are looked up on every request (an indexed read of microseconds), so a
revocation or a new key counts at once in every process sharing the file. This
module knows nothing of limits beyond the per-key overrides it stores.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from omnivox.access.tiers import Limits
from omnivox.store.sqlite import open_private

KEY_PREFIX = "sk-"
KEY_SECRET_BYTES = 32
KEY_ID_BYTES = 8
HINT_CHARS = 4
SHOWN_HEAD_CHARS = 8  # OpenAI masks keys as sk-abcde***...wxyz
SHOWN_TAIL_CHARS = 4

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    tier TEXT NOT NULL,
    rpm INTEGER,
    rpd INTEGER,
    tpm INTEGER,
    created_s REAL NOT NULL,
    revoked_s REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys (name)
    WHERE revoked_s IS NULL;
"""
COLUMNS = "key_id, name, key_sha256, hint, tier, rpm, rpd, tpm, created_s, revoked_s"


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(KEY_SECRET_BYTES)


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def mask_key(raw_key: str) -> str:
    """``sk-abcde***...***wxyz`` as OpenAI writes it; short strings keep less in the clear."""
    head = min(SHOWN_HEAD_CHARS, len(raw_key) // 3)
    tail = min(SHOWN_TAIL_CHARS, len(raw_key) // 4)
    hidden = len(raw_key) - head - tail
    return raw_key[:head] + "*" * hidden + (raw_key[-tail:] if tail else "")


def bearer_token(authorization: str | None) -> str | None:
    """The key in ``Authorization: Bearer <key>``; None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str
    name: str
    tier: str
    overrides: Limits
    created_s: float
    revoked_s: float | None
    hint: str  # "sk-...wxyz"

    @property
    def active(self) -> bool:
        return self.revoked_s is None


class KeyStore(Protocol):
    def create(self, name: str, tier: str, overrides: Limits) -> tuple[ApiKey, str]: ...

    def find(self, raw_key: str) -> ApiKey | None: ...

    def list(self) -> list[ApiKey]: ...

    def revoke(self, key_id_or_name: str) -> ApiKey: ...

    def has_keys(self) -> bool:
        """Whether any key was ever created here, revoked ones included."""

    def close(self) -> None: ...


class SqliteKeyStore:
    """Keys in one SQLite file (WAL), shared by every process on the host."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        # The ledger shares the file; both make it the owner's alone (0600), whatever the umask.
        self._db = open_private(path)
        self._db.executescript(SCHEMA)
        self._keys_cache: tuple[int, bool] | None = None

    def create(self, name: str, tier: str, overrides: Limits) -> tuple[ApiKey, str]:
        """A new key and its raw secret, which exists only in the return value."""
        self._keys_cache = None
        if not name.strip():
            raise ValueError("a key needs a non-empty name")
        raw = new_raw_key()
        key = ApiKey(
            key_id="key_" + secrets.token_hex(KEY_ID_BYTES),
            name=name,
            tier=tier,
            overrides=overrides,
            created_s=time.time(),
            revoked_s=None,
            hint=KEY_PREFIX + "..." + raw[-HINT_CHARS:],
        )
        row = (key.key_id, name, hash_key(raw), key.hint, tier, overrides.rpm, overrides.rpd)
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO api_keys ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
                    (*row, overrides.tpm, key.created_s),
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"an active key named {name!r} already exists") from None
        return key, raw

    def find(self, raw_key: str) -> ApiKey | None:
        """The active key whose secret this is, or None."""
        digest = hash_key(raw_key)
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM api_keys WHERE key_sha256 = ? AND revoked_s IS NULL",
                (digest,),
            ).fetchone()
        if row is None or not hmac.compare_digest(row[2], digest):
            return None
        return _key(row)

    def list(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(f"SELECT {COLUMNS} FROM api_keys ORDER BY created_s").fetchall()
        return [_key(row) for row in rows]

    def revoke(self, key_id_or_name: str) -> ApiKey:
        """Revoke the active key with this id or name; ValueError if there is none."""
        self._keys_cache = None
        with self._lock:
            row = self._db.execute(
                f"SELECT {COLUMNS} FROM api_keys WHERE revoked_s IS NULL AND "
                "(key_id = ? OR name = ?)",
                (key_id_or_name, key_id_or_name),
            ).fetchone()
            if row is None:
                raise ValueError(f"no active key has the id or name {key_id_or_name!r}")
            now_s = time.time()
            self._db.execute("UPDATE api_keys SET revoked_s = ? WHERE key_id = ?", (now_s, row[0]))
        return _key((*row[:-1], now_s))

    def has_keys(self) -> bool:
        # Asked on every keyless request. A revoked key still counts: revoking the last
        # key must not open a server to anyone (the revoked key included). ``data_version``
        # changes whenever another connection (``omnivox keys create`` in another process)
        # commits, and this connection's own writes reset the cache, so the answer is
        # never stale.
        with self._lock:
            version = self._db.execute("PRAGMA data_version").fetchone()[0]
            if self._keys_cache is None or self._keys_cache[0] != version:
                row = self._db.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone()
                self._keys_cache = (version, row is not None)
            return self._keys_cache[1]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _key(row: tuple[object, ...]) -> ApiKey:
    key_id, name, _, hint, tier, rpm, rpd, tpm, created_s, revoked_s = row
    return ApiKey(
        key_id=str(key_id),
        name=str(name),
        tier=str(tier),
        overrides=Limits(_int(rpm), _int(rpd), _int(tpm)),
        created_s=float(created_s),  # type: ignore[arg-type]
        revoked_s=None if revoked_s is None else float(revoked_s),  # type: ignore[arg-type]
        hint=str(hint),
    )


def _int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
