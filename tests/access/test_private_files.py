"""The access file (API key hashes and the usage ledger) is its owner's alone, whatever the
umask, and making it so never disturbs the SQLite connections already open on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import LedgerEntry, SqliteLedger
from omnivox.access.tiers import Limits
from omnivox.store.private import make_private
from tests.support.files import mode, permissive_umask  # noqa: F401 (a fixture)


def row(request_id: str) -> LedgerEntry:
    return LedgerEntry(request_id, None, "", "anonymous", "m", "s", "c", 1.0, 1, "completed")


@pytest.mark.usefixtures("permissive_umask")
def test_the_access_file_and_its_directory_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    path = data_dir / "access.sqlite3"
    keys = SqliteKeyStore(path)
    keys.create("ci", "1", Limits())
    ledger = SqliteLedger(path)
    ledger.record_now(row("req_1"))
    files = [data_dir / f"access.sqlite3{suffix}" for suffix in ("", "-wal", "-shm")]
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(data_dir) == 0o700
    ledger.close_now()
    keys.close()


@pytest.mark.usefixtures("permissive_umask")
def test_an_access_file_an_earlier_release_left_readable_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "access.sqlite3"
    SqliteLedger(path).close_now()
    os.chmod(path, 0o644)
    SqliteKeyStore(path).close()
    assert mode(path) == 0o600
    os.chmod(path, 0o644)
    SqliteLedger(path).close_now()
    assert mode(path) == 0o600


def count_rows_elsewhere(path: Path) -> int:
    """The ledger's rows as another process sees them; its connection closes at the end."""
    code = (
        f"import sqlite3; db = sqlite3.connect({str(path)!r}); "
        "print(db.execute('SELECT COUNT(*) FROM ledger').fetchone()[0]); db.close()"
    )
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return int(done.stdout)


def test_making_an_open_database_private_keeps_its_connections_locks(tmp_path: Path) -> None:
    """Closing any descriptor of a database drops the process's POSIX locks on it; another
    process could then take it for unused, checkpoint it and delete the WAL being written."""
    path = tmp_path / "access.sqlite3"
    ledger = SqliteLedger(path)
    ledger.record_now(row("req_1"))
    make_private(path)  # as the key store does when it opens the same file
    assert count_rows_elsewhere(path) == 1
    ledger.record_now(row("req_2"))
    assert count_rows_elsewhere(path) == 2, "the ledger wrote into a deleted WAL"
    ledger.close_now()
