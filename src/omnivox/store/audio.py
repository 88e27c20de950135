"""The audio-id store: answers spoken earlier, kept until they expire.

An assistant message ``{"audio": {"id": ...}}`` in a later request is resolved
here to the transcript and the PCM of that answer. The default store is one
SQLite file in the data directory (WAL mode), so ids survive a restart; expired
rows are never returned and are purged on start and then at most once a
minute as new audio is stored.

``put`` never blocks on the disk: the answer is readable at once from memory
and a writer thread persists it moments later, everything queued by then in
one transaction (``close`` waits for it), so storing a spoken answer costs the
streaming loop microseconds. ``get`` may read the disk: ``serving`` calls it
from a thread.
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

PURGE_INTERVAL_S = 60.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS audio (
    id TEXT PRIMARY KEY,
    transcript TEXT NOT NULL,
    pcm_s16le BLOB NOT NULL,
    sample_rate INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audio_expires_at ON audio (expires_at);
"""


@dataclass(frozen=True, slots=True)
class StoredAudio:
    audio_id: str
    transcript: str
    pcm_s16le: bytes
    sample_rate: int
    expires_at: int


class AudioStore(Protocol):
    def put(self, audio: StoredAudio) -> None: ...

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None: ...

    def purge(self, now_s: float | None = None) -> int: ...

    def close(self) -> None: ...


class SqliteAudioStore:
    """One SQLite file: a writer thread with its own connection, readers with another.

    ``put`` only takes the lock of the in-memory pending map, never the
    database's, so the event loop does not wait for a write in progress.
    The writer commits everything queued so far in one transaction.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._write_db = self._connect(path)
        self._write_db.executescript(SCHEMA)
        self._read_db = self._connect(path)
        self._write_lock = threading.Lock()  # the write connection: writer thread, purge, close
        self._read_lock = threading.Lock()
        self._pending_lock = threading.Lock()
        self._last_purge_s = 0.0
        self.purge()
        self._unwritten: dict[str, StoredAudio] = {}
        self._queue: queue.SimpleQueue[StoredAudio | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="audio-store", daemon=True)
        self._writer.start()

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def put(self, audio: StoredAudio) -> None:
        with self._pending_lock:
            self._unwritten[audio.audio_id] = audio
        self._queue.put(audio)

    def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            stopping = batch[-1] is None
            rows = [a for a in batch if a is not None]
            if rows:
                self._write(rows)
            if time.time() - self._last_purge_s > PURGE_INTERVAL_S:
                self.purge()

    def _write(self, rows: list[StoredAudio]) -> None:
        with self._write_lock:
            self._write_db.execute("BEGIN")
            self._write_db.executemany(
                "INSERT OR REPLACE INTO audio VALUES (?, ?, ?, ?, ?)",
                [
                    (a.audio_id, a.transcript, a.pcm_s16le, a.sample_rate, a.expires_at)
                    for a in rows
                ],
            )
            self._write_db.execute("COMMIT")
        with self._pending_lock:
            for audio in rows:
                if self._unwritten.get(audio.audio_id) is audio:
                    del self._unwritten[audio.audio_id]

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None:
        now = time.time() if now_s is None else now_s
        with self._pending_lock:
            pending = self._unwritten.get(audio_id)
        if pending is not None:
            return pending if pending.expires_at > now else None
        with self._read_lock:
            row = self._read_db.execute(
                "SELECT id, transcript, pcm_s16le, sample_rate, expires_at FROM audio "
                "WHERE id = ? AND expires_at > ?",
                (audio_id, int(now)),
            ).fetchone()
        return StoredAudio(*row) if row else None

    def purge(self, now_s: float | None = None) -> int:
        now = time.time() if now_s is None else now_s
        with self._write_lock:
            cursor = self._write_db.execute("DELETE FROM audio WHERE expires_at <= ?", (int(now),))
        self._last_purge_s = now
        return cursor.rowcount

    def close(self) -> None:
        """Write what is pending, then close the database."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        with self._write_lock, self._read_lock:
            self._read_db.close()
            self._write_db.close()
