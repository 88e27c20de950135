"""The audio-id store: answers spoken earlier, kept until they expire.

An assistant message ``{"audio": {"id": ...}}`` in a later request is resolved
here to the transcript and the PCM of that answer. The default store is one
SQLite file in the data directory (WAL mode), so ids survive a restart; expired
rows are never returned and are purged on start and then at most once a
minute as new audio is stored.

``put`` never blocks on the disk: the answer is readable at once from memory
and a writer thread persists it moments later (``close`` waits for it), so
storing a spoken answer costs the streaming loop microseconds. ``get`` may
read the disk: ``serving`` calls it from a thread.
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
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._last_purge_s = 0.0
        self.purge()
        self._unwritten: dict[str, StoredAudio] = {}
        self._queue: queue.SimpleQueue[StoredAudio | None] = queue.SimpleQueue()
        self._writer = threading.Thread(target=self._write_loop, name="audio-store", daemon=True)
        self._writer.start()

    def put(self, audio: StoredAudio) -> None:
        with self._lock:
            self._unwritten[audio.audio_id] = audio
        self._queue.put(audio)

    def _write_loop(self) -> None:
        while (audio := self._queue.get()) is not None:
            with self._lock:
                self._db.execute(
                    "INSERT OR REPLACE INTO audio VALUES (?, ?, ?, ?, ?)",
                    (
                        audio.audio_id,
                        audio.transcript,
                        audio.pcm_s16le,
                        audio.sample_rate,
                        audio.expires_at,
                    ),
                )
                del self._unwritten[audio.audio_id]
            if time.time() - self._last_purge_s > PURGE_INTERVAL_S:
                self.purge()

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None:
        now = time.time() if now_s is None else now_s
        with self._lock:
            pending = self._unwritten.get(audio_id)
            if pending is not None:
                return pending if pending.expires_at > now else None
            row = self._db.execute(
                "SELECT id, transcript, pcm_s16le, sample_rate, expires_at FROM audio "
                "WHERE id = ? AND expires_at > ?",
                (audio_id, int(now)),
            ).fetchone()
        return StoredAudio(*row) if row else None

    def purge(self, now_s: float | None = None) -> int:
        now = time.time() if now_s is None else now_s
        with self._lock:
            cursor = self._db.execute("DELETE FROM audio WHERE expires_at <= ?", (int(now),))
        self._last_purge_s = now
        return cursor.rowcount

    def close(self) -> None:
        """Write what is pending, then close the database."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        with self._lock:
            self._db.close()
