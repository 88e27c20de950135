"""The file store: uploaded files, each visible to its owner alone, until it expires.

A file's bytes lie in ``<data_dir>/files/<file id>``; its metadata (owner, name,
purpose, size, times) is a row of ``<data_dir>/files.sqlite3``. A file is written
whole to a temporary file in the same folder, flushed to disk (``fsync``) and
renamed into place; its row is written after that, so a row never names bytes that
are not all on disk. A crash between the rename and the row leaves bytes no row
names; a store that opens removes those once they are an hour old (another process
sharing the folder may be about to write their row).

Every read takes the owner: a file of another owner is answered exactly as a file
that does not exist (``None``), and so is an expired one. A deleted or expired
file's row stays a while as a tombstone, without its bytes, so that a list paged
with ``after=<that file>`` (deleting the files of each page as it comes) still
finds its place; ``delete_expired`` removes expired files' bytes and old
tombstones, and runs when the store opens and then at most once a minute as files
are created.

The store is the owner's alone (``store.private``): the folder ``0700``, the
database and each file ``0600``. One connection behind a lock serves every thread;
callers on an event loop call it from a worker thread. Several processes may share
a data directory. The store knows nothing of HTTP, of who the owners are, or of
what a purpose means.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import logging
import os
import secrets
import sqlite3
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from omnivox.errors import ServerError
from omnivox.store.private import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from omnivox.store.sqlite import open_private

FILES_DIR_NAME = "files"
INDEX_NAME = "files.sqlite3"
FILE_ID_PREFIX = "file-"
FILE_ID_CHARS = 24
PART_SUFFIX = ".part"  # a file being written; renamed to its id once whole
COPY_CHUNK_BYTES = 1024 * 1024
PURGE_INTERVAL_S = 60
TOMBSTONE_S = 7 * 24 * 3600  # how long a deleted file still marks its place for a cursor
ABANDONED_AFTER_S = 3600  # a part, or bytes without a row, this old is left over from a crash
STORE_FAILED_MESSAGE = "The server could not store the file."
_ALPHANUMERIC = string.ascii_letters + string.digits
_COLUMNS = "id, owner, filename, purpose, bytes, created_at, expires_at"
SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    deleted_at INTEGER
);
CREATE INDEX IF NOT EXISTS files_by_owner ON files (owner, created_at, seq);
CREATE INDEX IF NOT EXISTS files_by_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
"""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredFile:
    file_id: str
    owner: str
    filename: str
    purpose: str
    n_bytes: int
    created_at: int
    expires_at: int | None

    def to_json(self) -> dict[str, Any]:
        """OpenAI's file object."""
        return {
            "id": self.file_id,
            "object": "file",
            "bytes": self.n_bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def new_file_id() -> str:
    """``file-`` and 24 alphanumerics, from ``secrets``."""
    return FILE_ID_PREFIX + "".join(secrets.choice(_ALPHANUMERIC) for _ in range(FILE_ID_CHARS))


class FileStore:
    """Files by id and owner: bytes in a folder, rows in SQLite."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir / FILES_DIR_NAME
        self._dir.mkdir(PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        self._db = open_private(data_dir / INDEX_NAME)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._last_purge_s = 0
        self._remove_abandoned(time.time())
        self.delete_expired(int(time.time()))

    # ---- writing ---------------------------------------------------------------------------

    def create(
        self,
        owner: str,
        filename: str,
        purpose: str,
        data: bytes,
        expires_at: int | None = None,
    ) -> StoredFile:
        """Keep ``data``; the file is on disk (``fsync``) before it is returned."""
        return self.create_from(owner, filename, purpose, io.BytesIO(data), expires_at=expires_at)

    def create_from(
        self,
        owner: str,
        filename: str,
        purpose: str,
        source: BinaryIO,
        *,
        expires_at: int | None = None,
        expires_after_s: int | None = None,
    ) -> StoredFile:
        """Keep what ``source`` holds from its current position to its end, copied a chunk at
        a time. ``expires_after_s`` counts from the file's ``created_at`` (instead of
        ``expires_at``)."""
        file_id = new_file_id()
        final = self._dir / file_id
        try:
            n_bytes = self._write_whole(source, final)
        except OSError as exc:
            raise _store_failed(exc) from exc
        created_at = int(time.time())
        if expires_after_s is not None:
            expires_at = created_at + expires_after_s
        stored = StoredFile(file_id, owner, filename, purpose, n_bytes, created_at, expires_at)
        try:
            with self._lock:
                self._db.execute(
                    f"INSERT INTO files ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (file_id, owner, filename, purpose, n_bytes, created_at, expires_at),
                )
        except sqlite3.Error as exc:
            final.unlink(missing_ok=True)
            raise _store_failed(exc) from exc
        if created_at - self._last_purge_s >= PURGE_INTERVAL_S:
            with contextlib.suppress(OSError, sqlite3.Error):  # a purge may wait for the next
                self.delete_expired(created_at)
        return stored

    def _write_whole(self, source: BinaryIO, final: Path) -> int:
        """Copy ``source`` into a part file beside ``final``, sync it, rename it; its size."""
        part = final.with_name(final.name + PART_SUFFIX)
        n_bytes = 0
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with open(fd, "wb", closefd=True) as out:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    out.write(chunk)
                    n_bytes += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(part, final)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
        _sync_directory(self._dir)
        return n_bytes

    def delete(self, owner: str, file_id: str) -> bool:
        """Forget the file and remove its bytes; False when the owner has no such file."""
        now = int(time.time())
        with self._lock:
            row = self._db.execute(
                "UPDATE files SET deleted_at = ? WHERE id = ? AND owner = ? "
                "AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?) RETURNING id",
                (now, file_id, owner, now),
            ).fetchone()
        if row is None:
            return False
        (self._dir / file_id).unlink(missing_ok=True)
        return True

    def delete_expired(self, now: int) -> int:
        """Remove the bytes of files expired by ``now`` and tombstones past their time; the
        number of files removed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                expired = self._db.execute(
                    "UPDATE files SET deleted_at = ? WHERE deleted_at IS NULL "
                    "AND expires_at IS NOT NULL AND expires_at <= ? RETURNING id",
                    (now, now),
                ).fetchall()
                self._db.execute(
                    "DELETE FROM files WHERE deleted_at IS NOT NULL AND deleted_at <= ?",
                    (now - TOMBSTONE_S,),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._last_purge_s = now
        for (file_id,) in expired:
            (self._dir / file_id).unlink(missing_ok=True)
        return len(expired)

    def _remove_abandoned(self, now_s: float) -> None:
        """Remove part files and bytes without a row that a crash left behind."""
        with self._lock:
            rows = self._db.execute("SELECT id FROM files WHERE deleted_at IS NULL")
            known = {file_id for (file_id,) in rows}
        for path in self._dir.iterdir():
            if path.name in known and not path.name.endswith(PART_SUFFIX):
                continue
            with contextlib.suppress(FileNotFoundError):  # another process was quicker
                if path.stat().st_mtime < now_s - ABANDONED_AFTER_S:
                    path.unlink()
                    log.info("removed %s, left over from an interrupted upload", path.name)

    # ---- reading ---------------------------------------------------------------------------

    def get(self, owner: str, file_id: str) -> StoredFile | None:
        """The file; None when it is missing, expired, or another owner's."""
        now = int(time.time())
        with self._lock:
            row = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE id = ? AND owner = ? "
                "AND deleted_at IS NULL AND (expires_at IS NULL OR expires_at > ?)",
                (file_id, owner, now),
            ).fetchone()
        return StoredFile(*row) if row is not None else None

    def path(self, owner: str, file_id: str) -> Path | None:
        """Where the file's bytes lie (they may vanish once it is deleted: open, then read)."""
        stored = self.get(owner, file_id)
        return self._dir / stored.file_id if stored is not None else None

    def content(self, owner: str, file_id: str) -> bytes | None:
        path = self.path(owner, file_id)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except FileNotFoundError:  # deleted meanwhile
            return None

    def list(
        self,
        owner: str,
        *,
        purpose: str | None,
        limit: int,
        order: Literal["asc", "desc"],
        after: str | None,
    ) -> tuple[builtins.list[StoredFile], bool]:
        """A page of the owner's files by ``created_at`` (ties in the order they were made),
        those after the file ``after`` when given, and whether more follow. A cursor the
        owner never had gives an empty page."""
        now = int(time.time())
        where = ["owner = ?", "deleted_at IS NULL", "(expires_at IS NULL OR expires_at > ?)"]
        params: builtins.list[object] = [owner, now]
        if purpose is not None:
            where.append("purpose = ?")
            params.append(purpose)
        direction = "DESC" if order == "desc" else "ASC"
        with self._lock:
            if after is not None:
                cursor = self._db.execute(
                    "SELECT created_at, seq FROM files WHERE id = ? AND owner = ?", (after, owner)
                ).fetchone()
                if cursor is None:
                    return [], False
                where.append(f"(created_at, seq) {'<' if order == 'desc' else '>'} (?, ?)")
                params += cursor
            rows = self._db.execute(
                f"SELECT {_COLUMNS} FROM files WHERE {' AND '.join(where)} "
                f"ORDER BY created_at {direction}, seq {direction} LIMIT ?",
                (*params, limit + 1),
            ).fetchall()
        page = [StoredFile(*row) for row in rows[:limit]]
        return page, len(rows) > limit

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _store_failed(exc: BaseException) -> ServerError:
    log.error("could not store a file: %s", exc)
    return ServerError(STORE_FAILED_MESSAGE)


def _sync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
