"""Files only their owner may read: the data directory's databases, segments and keys.

Usage rows, transcripts of what people said, their answers' audio and key hashes are
nobody else's business on a shared machine, whatever the umask says. SQLite gives a
database's side files (``-wal``, ``-shm``) the database's own mode, so making the
database private before SQLite opens it covers them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def make_private(path: Path) -> None:
    """Create ``path`` (an SQLite database) as ``0600`` before SQLite opens it, whatever the
    umask; restrict an existing one and its side files, which SQLite creates with the
    database's own mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        # Never opened then: closing any descriptor of a database drops every POSIX lock
        # this process holds on it, those of its open SQLite connections included, and
        # another process could then checkpoint and delete a WAL still being written.
        restrict(path)
    for suffix in SQLITE_SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            restrict(side)


def restrict(path: Path) -> None:
    """Make an existing file private; leave a file another user shares on purpose as it is."""
    try:
        os.chmod(path, PRIVATE_FILE_MODE)
    except OSError as exc:  # another user's file, shared on purpose: use it as it is
        log.warning("could not make %s private to its owner: %s", path, exc)
