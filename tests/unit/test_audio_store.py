"""The audio-id store on disk: an SQLite index, the PCM in segment files."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from omnivox.errors import ServerError
from omnivox.store import audio as audio_store
from omnivox.store.audio import SEGMENT_S, SqliteAudioStore, StoredAudio
from tests.support.files import mode, permissive_umask  # noqa: F401 (a fixture)

WAIT_S = 10  # generous: the writer thread only has to wake


def answer(audio_id: str, n_bytes: int = 4_800, expires_in_s: float = 600) -> StoredAudio:
    pcm = os.urandom(n_bytes // 2 * 2)
    return StoredAudio(audio_id, f"said {audio_id}", pcm, 24_000, int(time.time() + expires_in_s))


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "audio-pcm").glob("*.pcm"))


def test_answers_survive_a_reopen_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "audio.sqlite3"
    store = SqliteAudioStore(path)
    stored = [answer(f"audio_{i}", n_bytes) for i, n_bytes in enumerate((2, 48_000, 6, 960_000))]
    for item in stored:
        store.put(item)
    store.close()  # writes what is pending
    reopened = SqliteAudioStore(path)
    assert [reopened.get(item.audio_id) for item in stored] == stored
    reopened.close()
    assert len(segments(tmp_path)) == 1  # one batch: one append to one segment


def test_the_store_purges_expired_rows(tmp_path: Path) -> None:
    path = tmp_path / "audio.sqlite3"
    store = SqliteAudioStore(path)
    now = time.time()
    store.put(StoredAudio("audio_old", "old", b"\x00\x00", 24_000, int(now) - 5))
    store.put(StoredAudio("audio_new", "new", b"\x00\x00", 24_000, int(now) + 500))
    assert store.get("audio_old") is None  # expired: never returned, even before it is written
    assert store.get("audio_new") is not None  # readable at once, before it is written
    store.close()
    reopened = SqliteAudioStore(path)  # purges expired rows at start
    assert reopened.get("audio_new") is not None
    reopened.close()
    rows = sqlite3.connect(path).execute("SELECT id FROM answers").fetchall()
    assert rows == [("audio_new",)]


def test_a_segment_is_deleted_once_no_row_points_into_it_and_no_server_writes_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audio.sqlite3"
    first = SqliteAudioStore(path)
    first.put(answer("audio_a", expires_in_s=100))
    first.close()
    [old_segment] = segments(tmp_path)
    second = SqliteAudioStore(path)
    second.put(answer("audio_b", expires_in_s=10_000))
    assert second.flush(timeout_s=5)
    [mine] = [s for s in segments(tmp_path) if s != old_segment]
    later_s = time.time() + 1_000  # audio_a has expired, audio_b has not
    assert second.purge(now_s=later_s) == 1
    assert old_segment.exists()  # recently written: another server may still append to it
    long_ago_s = time.time() - 3 * SEGMENT_S
    os.utime(old_segment, (long_ago_s, long_ago_s))
    os.utime(mine, (long_ago_s, long_ago_s))
    second.purge(now_s=later_s)
    assert not old_segment.exists()
    assert mine.exists()  # audio_b lives in it
    assert second.get("audio_b") is not None
    second.close()


def test_two_servers_on_one_data_dir_read_each_others_answers_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audio_store, "ABSENT_AFTER_S", 5.0)  # a slow CI machine
    path = tmp_path / "audio.sqlite3"
    one, other = SqliteAudioStore(path), SqliteAudioStore(path)
    spoken = answer("audio_shared", 48_000)
    one.put(spoken)
    assert other.get("audio_shared") == spoken  # not yet written when asked: it waits for it
    other.put(answer("audio_other"))
    assert other.flush(timeout_s=5)
    assert one.get("audio_other") is not None
    one.close()
    other.close()
    assert len(segments(tmp_path)) == 2  # each appends to its own


def test_a_missing_segment_reads_as_an_unknown_id(tmp_path: Path) -> None:
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")
    store.put(answer("audio_lost"))
    assert store.flush(timeout_s=5)
    for segment in segments(tmp_path):
        segment.unlink()
    assert store.get("audio_lost") is None
    store.close()


def test_a_failed_write_is_logged_and_the_writer_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")
    real_write = store._write
    failures = iter([OSError(28, "No space left on device")])

    def write_once_failing(rows: list[StoredAudio]) -> None:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        real_write(rows)

    monkeypatch.setattr(store, "_write", write_once_failing)
    store.put(answer("audio_dropped"))
    assert store.flush(timeout_s=5)
    assert "could not store 1 spoken answers" in caplog.text
    assert store.get("audio_dropped", now_s=time.time()) is None
    kept = answer("audio_kept")
    store.put(kept)
    store.close()
    assert SqliteAudioStore(tmp_path / "audio.sqlite3").get("audio_kept") == kept


def test_answers_an_earlier_release_kept_in_sqlite_are_moved_to_a_segment(tmp_path: Path) -> None:
    path = tmp_path / "audio.sqlite3"
    legacy = sqlite3.connect(path)
    legacy.execute(
        "CREATE TABLE audio (id TEXT PRIMARY KEY, transcript TEXT NOT NULL, "
        "pcm_s16le BLOB NOT NULL, sample_rate INTEGER NOT NULL, expires_at INTEGER NOT NULL)"
    )
    kept, gone = answer("audio_kept", 9_600), answer("audio_gone", expires_in_s=-5)
    for item in (kept, gone):
        legacy.execute(
            "INSERT INTO audio VALUES (?, ?, ?, ?, ?)",
            (item.audio_id, item.transcript, item.pcm_s16le, item.sample_rate, item.expires_at),
        )
    legacy.commit()
    legacy.close()
    store = SqliteAudioStore(path)
    assert store.get("audio_kept") == kept
    assert store.get("audio_gone") is None
    store.close()
    tables = {name for (name,) in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")}
    assert "audio" not in tables
    assert SqliteAudioStore(path).get("audio_kept") == kept  # and the next start finds it done


def test_storing_an_answer_never_waits_for_a_write_in_progress(tmp_path: Path) -> None:
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")
    fresh = answer("audio_fresh")
    done = threading.Event()

    def put_and_get() -> None:
        store.put(fresh)
        assert store.get("audio_fresh") == fresh
        done.set()

    with store._write_lock:  # a slow disk: the writer thread holds the database
        threading.Thread(target=put_and_get, daemon=True).start()
        assert done.wait(timeout=5), "put/get waited for the database writer"
    store.close()
    assert SqliteAudioStore(tmp_path / "audio.sqlite3").get("audio_fresh") == fresh


class HeldWriter:
    """Holds the store's writer inside its first write until ``release``."""

    def __init__(self, store: SqliteAudioStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[list[str]] = []
        self.writing = threading.Event()
        self._release = threading.Event()
        real_write = store._write

        def write(rows: list[StoredAudio]) -> None:
            self.batches.append([row.audio_id for row in rows])
            self.writing.set()
            assert self._release.wait(WAIT_S)
            real_write(rows)

        monkeypatch.setattr(store, "_write", write)

    def release(self) -> None:
        self._release.set()


def test_answers_that_arrive_during_a_write_go_together_in_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")
    held = HeldWriter(store, monkeypatch)
    first = store.put(answer("audio_0"))
    assert held.writing.wait(WAIT_S)
    later = [store.put(answer(f"audio_{i}")) for i in range(1, 5)]
    held.release()
    for written in [first, *later]:
        written.result(timeout=WAIT_S)
    store.close()
    assert held.batches == [["audio_0"], ["audio_1", "audio_2", "audio_3", "audio_4"]]


def test_put_is_done_only_once_the_answer_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "audio.sqlite3"
    store = SqliteAudioStore(path)
    held = HeldWriter(store, monkeypatch)
    spoken = answer("audio_durable", 48_000)
    written = store.put(spoken)
    assert held.writing.wait(WAIT_S)
    assert not written.done(), "done before the write: a crash now would lose a given id"
    held.release()
    written.result(timeout=WAIT_S)
    # Committed and in the segment file, as another process (the next server) sees them:
    # no close, no flush, nothing left in this process's memory to rely on.
    other = SqliteAudioStore(path)
    assert other.get("audio_durable", now_s=time.time()) == spoken
    other.close()
    store.close()


def test_a_put_that_could_not_be_stored_fails_its_future(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")

    def full_disk(rows: list[StoredAudio]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "_write", full_disk)
    with pytest.raises(ServerError):
        store.put(answer("audio_lost")).result(timeout=WAIT_S)
    store.close()
    with pytest.raises(ServerError):  # closed: nothing would ever write it
        store.put(answer("audio_late")).result(timeout=WAIT_S)


@pytest.mark.usefixtures("permissive_umask")
def test_the_store_files_are_the_owners_alone(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = SqliteAudioStore(data_dir / "audio.sqlite3")
    store.put(answer("audio_private")).result(timeout=WAIT_S)
    files = [data_dir / f"audio.sqlite3{suffix}" for suffix in ("", "-wal", "-shm")]
    files += segments(data_dir)
    assert len(files) == 4
    assert {str(f.relative_to(data_dir)): mode(f) for f in files} == {
        str(f.relative_to(data_dir)): 0o600 for f in files
    }
    assert mode(data_dir) == 0o700 and mode(data_dir / "audio-pcm") == 0o700
    store.close()


@pytest.mark.usefixtures("permissive_umask")
def test_files_an_earlier_release_left_readable_are_made_private(tmp_path: Path) -> None:
    path = tmp_path / "audio.sqlite3"
    store = SqliteAudioStore(path)
    store.put(answer("audio_old")).result(timeout=WAIT_S)
    store.close()
    [segment] = segments(tmp_path)
    for file in (path, segment):
        os.chmod(file, 0o644)
    SqliteAudioStore(path).close()
    assert mode(path) == 0o600 and mode(segment) == 0o600
