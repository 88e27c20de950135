"""The audio-id store: answers spoken earlier, kept until they expire.

An assistant message ``{"audio": {"id": ...}}`` in a later request is resolved
here to the transcript and the PCM of that answer. The default store lives in
the data directory, so ids survive a restart: an SQLite index (WAL mode) of
each answer's transcript, expiry and where its PCM lies, and the PCM itself
appended to segment files beside it (``audio-pcm/``). Expired answers are
never returned; their rows are purged on start and then at most once a minute,
and a segment file is deleted once no row points into it.

Why segments: a blob in SQLite's WAL is written twice (the log, then the
checkpoint) through 4 KB overflow pages; appending the same bytes to a file and
indexing them costs a fraction of that CPU (docs/performance.md).

``put`` never blocks on the disk: the answer is readable at once from memory
and a writer thread persists it. ``put`` returns a future that is done once the
answer is committed: its PCM appended to the segment and its index row
committed, without fsync (like the ledger's ``synchronous=NORMAL``), so it
survives a killed server (``kill -9``), not a power cut. ``serving`` awaits it
before it tells the client the audio id is complete, so the writer never waits
to gather answers (a lone answer waits for its own write only); it
writes all that has arrived when it wakes in one ``writev`` and one ``INSERT``,
and answers that arrive while it writes go together in its next write (a group
commit): under load one wake serves many answers (each wake takes the
interpreter's lock from the event loop). ``close`` writes what is pending.
``get`` may read the disk: ``serving`` calls it from a thread. Another server
sharing the data directory sees an answer once it is written; ``get`` waits up
to ``ABSENT_AFTER_S`` for an id it can not find before calling it unknown, so a
follow-up sent to that other server right after the answer still finds it.

Several servers may share one data directory: each appends to segments of its
own (named by time, process and a random part), starts a new one every
``SEGMENT_S``, and only deletes a segment that no row points into and that no
server can still be writing (untouched for twice ``SEGMENT_S``).

The answers are the users' speech, so the files are the owner's alone: the
index (and SQLite's ``-wal``/``-shm``, which take its mode) and the segments
are made ``0600`` whatever the umask, and existing ones are set so at open;
the directories the store makes are ``0700``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from omnivox.errors import ServerError
from omnivox.store.private import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, make_private, restrict
from omnivox.store.sqlite import connect

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 60.0
ABSENT_AFTER_S = 0.1  # an id not found is looked for again once, this much later
SEGMENT_S = 60.0  # a segment takes appends for this long after it is made
ROWS_PER_INSERT = 100  # 7 parameters a row: under SQLite's oldest limit of 999
SEGMENT_SUFFIX = ".pcm"
STORE_FAILED_MESSAGE = "The server could not store the spoken answer."
SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id TEXT PRIMARY KEY,
    transcript TEXT NOT NULL,
    segment TEXT NOT NULL,
    pcm_offset INTEGER NOT NULL,
    pcm_bytes INTEGER NOT NULL,
    sample_rate INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS answers_expires_at ON answers (expires_at);
CREATE INDEX IF NOT EXISTS answers_segment ON answers (segment);
"""
LEGACY_TABLE = "audio"  # earlier releases kept the PCM itself in this table


@dataclass(frozen=True, slots=True)
class StoredAudio:
    audio_id: str
    transcript: str
    pcm_s16le: bytes
    sample_rate: int
    expires_at: int


class AudioStore(Protocol):
    def put(self, audio: StoredAudio) -> Future[None]:
        """Keep ``audio``, readable at once; the future is done once it survives a crash
        of this process (its exception a ``ServerError`` when it could not be stored)."""

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None: ...

    def purge(self, now_s: float | None = None) -> int: ...

    def close(self) -> None: ...


_Put = tuple[StoredAudio, Future[None]]  # an answer, and the future its writer completes


class _Segment:
    """The segment file this server appends to."""

    def __init__(self, directory: Path) -> None:
        self.made_s = time.time()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(self.made_s))
        self.name = f"{stamp}-{os.getpid()}-{secrets.token_hex(4)}{SEGMENT_SUFFIX}"
        path = directory / self.name
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        self.size = 0

    def append(self, pieces: list[bytes]) -> int:
        """Append ``pieces``; returns the offset of the first."""
        start = self.size
        for first in range(0, len(pieces), 512):  # under IOV_MAX
            group = pieces[first : first + 512]
            written = os.writev(self.fd, group)
            expected = sum(len(piece) for piece in group)
            if written != expected:  # a short write (a full disk): finish it piece by piece
                rest = b"".join(group)[written:]
                while rest:
                    rest = rest[os.write(self.fd, rest) :]
            self.size += expected
        return start

    def close(self) -> None:
        os.close(self.fd)


class SqliteAudioStore:
    """An SQLite index and PCM segment files: a writer thread, and readers.

    ``put`` only takes the lock of the in-memory pending map, never the
    database's, so the event loop does not wait for a write in progress.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        self._segments_dir = path.parent / f"{path.stem}-pcm"
        self._segments_dir.mkdir(PRIVATE_DIR_MODE, exist_ok=True)
        make_private(path)
        for segment in self._segments_dir.glob(f"*{SEGMENT_SUFFIX}"):
            restrict(segment)  # made by a release that did not restrict them
        self._write_db = self._connect(path)
        self._write_db.executescript(SCHEMA)
        self._read_db = self._connect(path)
        self._write_lock = threading.Lock()  # the write connection and the segment
        self._read_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._segment: _Segment | None = None
        self._last_purge_s = 0.0
        self._migrate_legacy_table()
        self.purge()
        self._unwritten: dict[str, StoredAudio] = {}
        self._queue: queue.SimpleQueue[_Put | threading.Event | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="audio-store", daemon=True)
        self._writer.start()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = connect(path)
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def put(self, audio: StoredAudio) -> Future[None]:
        written: Future[None] = Future()
        if not self._writer.is_alive():  # closed: nothing would ever write it
            written.set_exception(ServerError(STORE_FAILED_MESSAGE))
            return written
        with self._pending_lock:
            self._unwritten[audio.audio_id] = audio
        self._queue.put((audio, written))
        return written

    def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every answer put so far is on disk; False on timeout (and after
        ``close``, when nothing writes any more: pass a timeout)."""
        written = threading.Event()
        self._queue.put(written)
        return written.wait(timeout_s)

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]  # then whatever arrived meanwhile: no waiting
            while not self._queue.empty():
                batch.append(self._queue.get())
            stopping = None in batch
            puts = [item for item in batch if isinstance(item, tuple)]
            if puts:
                self._commit(puts)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if time.time() - self._last_purge_s > PURGE_INTERVAL_S:
                with contextlib.suppress(OSError, sqlite3.Error):
                    self.purge()
        while not self._queue.empty():  # put as the store closed: refused, not left waiting
            item = self._queue.get()
            if isinstance(item, tuple) and item[1].set_running_or_notify_cancel():
                item[1].set_exception(ServerError(STORE_FAILED_MESSAGE))
            elif isinstance(item, threading.Event):
                item.set()

    def _commit(self, puts: list[_Put]) -> None:
        """Write a batch, then tell each waiting ``put`` how it went."""
        rows = [audio for audio, _ in puts]
        failure: ServerError | None = None
        try:
            self._write(rows)
        except Exception as exc:  # whatever it is, each waiting answer must hear of it
            log.exception("could not store %d spoken answers", len(rows))
            failure = ServerError(STORE_FAILED_MESSAGE)
            failure.__cause__ = exc
        with self._pending_lock:
            for audio in rows:
                if self._unwritten.get(audio.audio_id) is audio:
                    del self._unwritten[audio.audio_id]
        for _, written in puts:
            # False when the waiter was cancelled (its client left): nobody to tell.
            if written.set_running_or_notify_cancel():
                if failure is None:
                    written.set_result(None)
                else:
                    written.set_exception(failure)

    def _write(self, rows: list[StoredAudio]) -> None:
        with self._write_lock:
            self._append(rows)

    def _append(self, rows: list[StoredAudio]) -> None:
        """The rows' PCM onto the segment, then their index rows (the write lock held)."""
        segment = self._current_segment()
        offset = segment.append([a.pcm_s16le for a in rows])
        values: list[object] = []
        for a in rows:
            values += (a.audio_id, a.transcript, segment.name, offset, len(a.pcm_s16le))
            values += (a.sample_rate, a.expires_at)
            offset += len(a.pcm_s16le)
        per_row = 7
        for first in range(0, len(values), ROWS_PER_INSERT * per_row):
            chunk = values[first : first + ROWS_PER_INSERT * per_row]
            places = ",".join(["(?,?,?,?,?,?,?)"] * (len(chunk) // per_row))
            self._write_db.execute(f"INSERT OR REPLACE INTO answers VALUES {places}", chunk)

    def _current_segment(self) -> _Segment:
        if self._segment is not None and time.time() - self._segment.made_s > SEGMENT_S:
            self._segment.close()
            self._segment = None
        if self._segment is None:
            self._segment = _Segment(self._segments_dir)
        return self._segment

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None:
        found = self._find(audio_id, now_s)
        if found is None and now_s is None:  # perhaps another server's, moments old
            time.sleep(ABSENT_AFTER_S)
            found = self._find(audio_id, None)
        return found

    def _find(self, audio_id: str, now_s: float | None) -> StoredAudio | None:
        now = time.time() if now_s is None else now_s
        with self._pending_lock:
            pending = self._unwritten.get(audio_id)
        if pending is not None:
            return pending if pending.expires_at > now else None
        with self._read_lock:
            row = self._read_db.execute(
                "SELECT transcript, segment, pcm_offset, pcm_bytes, sample_rate, expires_at "
                "FROM answers WHERE id = ? AND expires_at > ?",
                (audio_id, int(now)),
            ).fetchone()
        if row is None:
            return None
        transcript, segment, offset, n_bytes, sample_rate, expires_at = row
        try:
            with open(self._segments_dir / segment, "rb") as file:
                file.seek(offset)
                pcm = file.read(n_bytes)
        except OSError:
            pcm = b""
        if len(pcm) != n_bytes:
            log.warning("the audio of %s is missing from %s", audio_id, segment)
            return None
        return StoredAudio(audio_id, transcript, pcm, sample_rate, expires_at)

    def purge(self, now_s: float | None = None) -> int:
        """Delete expired rows, then the segments no row points into; the rows' count."""
        now = time.time() if now_s is None else now_s
        with self._write_lock:
            cursor = self._write_db.execute(
                "DELETE FROM answers WHERE expires_at <= ?", (int(now),)
            )
            used = {
                name for (name,) in self._write_db.execute("SELECT DISTINCT segment FROM answers")
            }
            current = self._segment.name if self._segment is not None else None
            untouched_since_s = time.time() - 2 * SEGMENT_S
            for file in self._segments_dir.glob(f"*{SEGMENT_SUFFIX}"):
                if file.name in used or file.name == current:
                    continue
                with contextlib.suppress(FileNotFoundError):  # another server was quicker
                    if file.stat().st_mtime < untouched_since_s:
                        file.unlink()
        self._last_purge_s = now
        return cursor.rowcount

    def _migrate_legacy_table(self) -> None:
        """Move the answers an earlier release kept in SQLite itself into a segment."""
        db = self._write_db
        with self._write_lock:
            db.execute("BEGIN IMMEDIATE")  # one server at a time; the next finds it done
            try:
                exists = db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (LEGACY_TABLE,),
                ).fetchone()
                if exists:
                    rows = db.execute(
                        f"SELECT id, transcript, pcm_s16le, sample_rate, expires_at "
                        f"FROM {LEGACY_TABLE} WHERE expires_at > ?",
                        (int(time.time()),),
                    ).fetchall()
                    if rows:
                        self._append([StoredAudio(*row) for row in rows])
                    db.execute(f"DROP TABLE {LEGACY_TABLE}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Write what is pending, then close the database and the segment."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        with self._write_lock, self._read_lock:
            self._read_db.close()
            self._write_db.close()
            if self._segment is not None:
                self._segment.close()
                self._segment = None
