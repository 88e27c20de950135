"""The file store on disk: whole files or none, owners apart, pages in order, expiry, reopening."""

from __future__ import annotations

import io
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnivox.errors import ServerError
from omnivox.store import files as file_store
from omnivox.store.files import FileStore, StoredFile
from tests.support.files import mode, permissive_umask  # noqa: F401 (a fixture)

ALICE = "key_alice"
BOB = "key_bob"
DAY_S = 24 * 3600


@pytest.fixture
def store(tmp_path: Path) -> Iterator[FileStore]:
    opened = FileStore(tmp_path)
    yield opened
    opened.close()


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "files").iterdir() if p.name.endswith(".part"))


def make_files(store: FileStore, n: int, owner: str = ALICE, purpose: str = "batch") -> list[str]:
    return [store.create(owner, f"f{i}.jsonl", purpose, b"{}\n").file_id for i in range(n)]


def test_a_file_is_kept_whole_and_described_as_openai_describes_it(
    store: FileStore, tmp_path: Path
) -> None:
    data = os.urandom(3 * file_store.COPY_CHUNK_BYTES + 17)  # several chunks and a piece
    stored = store.create(ALICE, "requests.jsonl", "batch", data, expires_at=2_000_000_000)
    assert re.fullmatch(r"file-[A-Za-z0-9]{24}", stored.file_id)
    assert stored.n_bytes == len(data)
    assert abs(stored.created_at - time.time()) < 60
    assert store.get(ALICE, stored.file_id) == stored
    assert store.content(ALICE, stored.file_id) == data
    path = store.path(ALICE, stored.file_id)
    assert path is not None and path.read_bytes() == data
    assert stored.to_json() == {
        "id": stored.file_id,
        "object": "file",
        "bytes": len(data),
        "created_at": stored.created_at,
        "expires_at": 2_000_000_000,
        "filename": "requests.jsonl",
        "purpose": "batch",
        "status": "processed",
        "status_details": None,
    }
    assert leftovers(tmp_path) == []


def test_ids_differ(store: FileStore) -> None:
    ids = make_files(store, 50)
    assert len(set(ids)) == 50


def test_a_file_that_could_not_be_read_whole_leaves_nothing_behind(
    store: FileStore, tmp_path: Path
) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.reads = 0

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            self.reads += 1
            if self.reads > 2:
                raise OSError("the disk went away")
            return b"x" * 1000

    with pytest.raises(ServerError):
        store.create_from(ALICE, "a.jsonl", "batch", Broken())  # type: ignore[arg-type]
    assert leftovers(tmp_path) == []
    assert list((tmp_path / "files").iterdir()) == []
    assert store.list(ALICE, purpose=None, limit=10, order="desc", after=None) == ([], False)


def test_another_owners_file_does_not_exist_for_them(store: FileStore) -> None:
    stored = store.create(ALICE, "a.jsonl", "batch", b"{}\n")
    assert store.get(BOB, stored.file_id) is None
    assert store.content(BOB, stored.file_id) is None
    assert store.path(BOB, stored.file_id) is None
    assert store.delete(BOB, stored.file_id) is False
    assert store.list(BOB, purpose=None, limit=10, order="desc", after=None) == ([], False)
    assert store.list(BOB, purpose=None, limit=10, order="desc", after=stored.file_id) == (
        [],
        False,
    )
    assert store.get(ALICE, stored.file_id) == stored  # untouched by the attempt


def test_pages_follow_the_order_of_creation_both_ways(store: FileStore) -> None:
    ids = make_files(store, 7)  # most share a second: ties go in the order they were made
    newest_first: list[str] = []
    after = None
    while True:
        page, has_more = store.list(ALICE, purpose=None, limit=3, order="desc", after=after)
        newest_first += [f.file_id for f in page]
        assert has_more == (len(newest_first) < 7)
        if not has_more:
            break
        after = page[-1].file_id
    assert newest_first == ids[::-1]
    oldest_first, has_more = store.list(ALICE, purpose=None, limit=7, order="asc", after=None)
    assert [f.file_id for f in oldest_first] == ids and not has_more
    rest, _ = store.list(ALICE, purpose=None, limit=10, order="asc", after=ids[4])
    assert [f.file_id for f in rest] == ids[5:]


def test_a_purpose_filters_the_list(store: FileStore) -> None:
    batch = make_files(store, 2, purpose="batch")
    other = make_files(store, 2, purpose="user_data")
    page, _ = store.list(ALICE, purpose="user_data", limit=10, order="asc", after=None)
    assert [f.file_id for f in page] == other
    page, _ = store.list(ALICE, purpose="batch", limit=10, order="asc", after=None)
    assert [f.file_id for f in page] == batch


def test_deleting_each_page_as_it_comes_still_reaches_the_end(store: FileStore) -> None:
    ids = make_files(store, 5)
    seen: list[str] = []
    after = None
    has_more = True
    while has_more:
        page, has_more = store.list(ALICE, purpose=None, limit=2, order="desc", after=after)
        for stored in page:
            assert store.delete(ALICE, stored.file_id)
            seen.append(stored.file_id)
        after = page[-1].file_id if page else None
    assert seen == ids[::-1]
    assert store.list(ALICE, purpose=None, limit=10, order="desc", after=None) == ([], False)


def test_a_deleted_file_is_gone_with_its_bytes(store: FileStore) -> None:
    stored = store.create(ALICE, "a.jsonl", "batch", b"{}\n")
    path = store.path(ALICE, stored.file_id)
    assert path is not None
    assert store.delete(ALICE, stored.file_id) is True
    assert not path.exists()
    assert store.get(ALICE, stored.file_id) is None
    assert store.content(ALICE, stored.file_id) is None
    assert store.delete(ALICE, stored.file_id) is False


def test_an_expired_file_is_gone_and_its_bytes_are_removed(
    store: FileStore, tmp_path: Path
) -> None:
    now = int(time.time())
    expired = store.create(ALICE, "old.jsonl", "batch", b"{}\n", expires_at=now - 1)
    kept = store.create(ALICE, "new.jsonl", "batch", b"{}\n", expires_at=now + 3600)
    forever = store.create(ALICE, "notes.txt", "user_data", b"hi")
    assert store.get(ALICE, expired.file_id) is None
    assert store.content(ALICE, expired.file_id) is None
    assert store.delete(ALICE, expired.file_id) is False
    page, _ = store.list(ALICE, purpose=None, limit=10, order="asc", after=None)
    assert [f.file_id for f in page] == [kept.file_id, forever.file_id]
    bytes_of_expired = tmp_path / "files" / expired.file_id
    assert bytes_of_expired.exists()  # until the purge
    assert store.delete_expired(now) == 1
    assert not bytes_of_expired.exists()
    assert store.delete_expired(now) == 0
    assert store.delete_expired(now + 3600) == 1  # kept's turn; forever never expires
    assert store.get(ALICE, forever.file_id) == forever


def test_an_expiry_counted_from_creation(store: FileStore) -> None:
    stored = store.create_from(ALICE, "a.jsonl", "batch", io.BytesIO(b"{}\n"), expires_after_s=60)
    assert stored.expires_at == stored.created_at + 60
    assert store.get(ALICE, stored.file_id) == stored


def test_tombstones_are_purged_after_their_time(store: FileStore) -> None:
    first, second = make_files(store, 2)
    assert store.delete(ALICE, first)
    page, _ = store.list(ALICE, purpose=None, limit=10, order="asc", after=first)
    assert [f.file_id for f in page] == [second]  # the deleted file still marks its place
    store.delete_expired(int(time.time()) + file_store.TOMBSTONE_S + 1)
    assert store.list(ALICE, purpose=None, limit=10, order="asc", after=first) == ([], False)


def test_a_new_store_on_the_same_directory_sees_the_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    stored = store.create(ALICE, "a.jsonl", "batch", b'{"a": 1}\n')
    deleted = store.create(ALICE, "b.jsonl", "batch", b"{}\n")
    store.delete(ALICE, deleted.file_id)
    store.close()
    reopened = FileStore(tmp_path)
    try:
        assert reopened.get(ALICE, stored.file_id) == stored
        assert reopened.content(ALICE, stored.file_id) == b'{"a": 1}\n'
        assert reopened.get(ALICE, deleted.file_id) is None
        page, _ = reopened.list(ALICE, purpose=None, limit=10, order="desc", after=None)
        assert page == [stored]
    finally:
        reopened.close()


def test_opening_removes_what_an_interrupted_upload_left_once_it_is_old(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    stored = store.create(ALICE, "a.jsonl", "batch", b"{}\n")
    store.close()
    folder = tmp_path / "files"
    old_s = time.time() - file_store.ABANDONED_AFTER_S - 60
    for name in ("file-old.part", "file-oldwithoutrow", "file-young.part", "file-youngnorow"):
        (folder / name).write_bytes(b"partial")
    for name in ("file-old.part", "file-oldwithoutrow"):
        os.utime(folder / name, (old_s, old_s))
    os.utime(folder / stored.file_id, (old_s, old_s))  # old, but its row names it
    FileStore(tmp_path).close()
    remaining = sorted(p.name for p in folder.iterdir())
    assert remaining == sorted([stored.file_id, "file-young.part", "file-youngnorow"])


def test_files_made_from_many_threads_are_all_kept(store: FileStore) -> None:
    made: list[StoredFile] = []
    lock = threading.Lock()

    def upload(i: int) -> None:
        stored = store.create(ALICE, f"{i}.jsonl", "batch", str(i).encode() * 1000)
        with lock:
            made.append(stored)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    page, has_more = store.list(ALICE, purpose=None, limit=100, order="asc", after=None)
    assert {f.file_id for f in page} == {f.file_id for f in made} and not has_more
    for stored in made:
        assert store.content(ALICE, stored.file_id) == stored.filename.split(".")[0].encode() * 1000


@pytest.mark.usefixtures("permissive_umask")
def test_the_files_and_their_index_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = FileStore(data_dir)
    stored = store.create(ALICE, "a.jsonl", "batch", b"{}\n")
    try:
        assert mode(data_dir / "files") == 0o700
        assert mode(data_dir / "files" / stored.file_id) == 0o600
        assert mode(data_dir / "files.sqlite3") == 0o600
    finally:
        store.close()
