"""The audio-id store: answers spoken earlier, kept until they expire.

An assistant message ``{"audio": {"id": ...}}`` in a later request is resolved
here to the transcript and the PCM of that answer. The default store is one
SQLite file in the data directory (WAL mode), so ids survive a restart; expired
rows are never returned and are purged on start and then at most once a
minute as new audio is stored. Calls block: ``serving`` runs them in a thread.
"""

from __future__ import annotations

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

    def put(self, audio: StoredAudio) -> None:
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
        if time.time() - self._last_purge_s > PURGE_INTERVAL_S:
            self.purge()

    def get(self, audio_id: str, now_s: float | None = None) -> StoredAudio | None:
        now = time.time() if now_s is None else now_s
        with self._lock:
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
        with self._lock:
            self._db.close()
