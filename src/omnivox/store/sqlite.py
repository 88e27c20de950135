"""How omnivox opens its SQLite databases: the API keys, the usage ledger, the audio index.

Each file is the owner's alone (``private``: made so before the first connection),
in WAL mode so that readers never wait for the writer, and shared by several
processes: a connection waits up to ``SQLITE_BUSY_TIMEOUT_MS`` for another's lock
rather than fail. Connections may be used from any thread; their callers hold their
own locks. This module knows nothing of tables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from omnivox.store.private import PRIVATE_DIR_MODE, make_private

SQLITE_BUSY_TIMEOUT_MS = 5000


def open_private(path: Path) -> sqlite3.Connection:
    """Make ``path``'s folder (``0700``) and the database private, then connect to it."""
    path.parent.mkdir(PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    make_private(path)
    return connect(path)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal."""
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA journal_mode=WAL")
    return db
