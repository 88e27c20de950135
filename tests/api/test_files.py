"""``/v1/files`` through the official SDK with strict response validation.

One keyed server serves the module; each test makes keys of its own, so each sees a
store of its own (a caller sees only its own files). Servers with other settings, or
without keys, are made where a test needs them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from omnivox.access.keys import SqliteKeyStore
from omnivox.server import files_routes
from omnivox.store.files import FileStore
from tests.access.conftest import keyed_client, make_key, start_keyed_server
from tests.support.live_server import LiveServer

BATCH_S = 30 * 24 * 3600
LINE = b'{"custom_id": "r1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = start_keyed_server(tmp_path_factory.mktemp("files"))
    yield started
    started.stop()


@pytest.fixture
def new_client(server: LiveServer) -> Iterator[Any]:
    """Make clients, each with a key of its own (closed after the test)."""
    clients: list[openai.OpenAI] = []

    def make() -> openai.OpenAI:
        name = f"files-{secrets.token_hex(4)}"  # names are unique among active keys
        client = keyed_client(server.base_url, make_key(server.settings.data_dir, name))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(new_client: Any) -> openai.OpenAI:
    return new_client()


def batch_file(n_lines: int = 3) -> bytes:
    return LINE * n_lines


def assert_error(exc: openai.APIStatusError, status: int, param: str | None) -> dict[str, Any]:
    assert exc.status_code == status, exc.response.text
    error = exc.response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    return error


def test_a_batch_file_from_bytes_round_trips(client: openai.OpenAI) -> None:
    data = batch_file()
    created = client.files.create(file=("requests.jsonl", data), purpose="batch")
    assert re.fullmatch(r"file-[A-Za-z0-9]{24}", created.id)
    assert (created.object, created.filename, created.purpose) == (
        "file",
        "requests.jsonl",
        "batch",
    )
    assert created.bytes == len(data)
    assert created.status == "processed" and created.status_details is None
    assert created.expires_at == created.created_at + BATCH_S  # a batch file's default
    assert client.files.retrieve(created.id) == created
    content = client.files.content(created.id)
    assert content.content == data
    assert content.response.headers["content-type"] == "application/octet-stream"


def test_a_file_from_a_path_comes_back_byte_for_byte(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "notes.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)  # spooled to disk on the way in, streamed out
    path.write_bytes(data)
    created = client.files.create(file=path, purpose="user_data")
    assert (created.filename, created.bytes, created.expires_at) == ("notes.bin", len(data), None)
    assert client.files.content(created.id).content == data


def test_the_list_filters_orders_and_pages(client: openai.OpenAI) -> None:
    batch = [
        client.files.create(file=(f"{i}.jsonl", batch_file(1)), purpose="batch").id
        for i in range(5)
    ]
    other = client.files.create(file=("a.txt", b"hello"), purpose="user_data").id
    newest_first = [*batch, other][::-1]
    assert [f.id for f in client.files.list()] == newest_first
    assert [f.id for f in client.files.list(order="asc")] == [*batch, other]
    assert [f.id for f in client.files.list(purpose="user_data")] == [other]
    first = client.files.list(purpose="batch", limit=2)
    assert [f.id for f in first.data] == batch[::-1][:2]
    assert first.has_more is True
    raw = client.files.with_raw_response.list(purpose="batch", limit=2).http_response.json()
    assert (raw["object"], raw["first_id"], raw["last_id"]) == ("list", batch[4], batch[3])
    # the SDK's auto-pagination follows has_more with after=<the last id of a page>
    assert [f.id for f in client.files.list(purpose="batch", limit=2)] == batch[::-1]
    assert [f.id for f in client.files.list(order="asc", limit=2, after=batch[1])] == [
        *batch[2:],
        other,
    ]
    last = client.files.list(purpose="batch", limit=5)
    assert last.has_more is False


def test_deleting_each_page_as_it_is_listed_deletes_them_all(client: openai.OpenAI) -> None:
    for i in range(5):
        client.files.create(file=(f"{i}.jsonl", batch_file(1)), purpose="batch")
    deleted = [client.files.delete(f.id) for f in client.files.list(limit=2)]
    assert len(deleted) == 5 and all(d.deleted for d in deleted)
    assert client.files.list().data == []


def test_a_deleted_file_is_not_found(client: openai.OpenAI) -> None:
    created = client.files.create(file=("requests.jsonl", batch_file()), purpose="batch")
    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    for call in (client.files.retrieve, client.files.content, client.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call(created.id)
        error = assert_error(caught.value, 404, "id")
        assert error["message"] == f"No such File object: {created.id}"
    assert client.files.list().data == []


def test_another_key_sees_nothing_of_a_keys_files(new_client: Any) -> None:
    alice, bob = new_client(), new_client()
    created = alice.files.create(file=("requests.jsonl", batch_file()), purpose="batch")
    for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call(created.id)
        assert_error(caught.value, 404, "id")
    assert bob.files.list().data == []
    assert bob.files.list(after=created.id).data == []
    assert alice.files.retrieve(created.id) == created  # still there for its owner
    assert alice.files.content(created.id).content == batch_file()


def test_an_unknown_purpose_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("a.jsonl", batch_file()), purpose="homework")  # type: ignore[arg-type]
    error = assert_error(caught.value, 400, "purpose")
    assert "'homework'" in error["message"] and "'batch'" in error["message"]


@pytest.mark.parametrize("purpose", ["assistants", "vision", "user_data", "fine-tune"])
def test_the_other_purposes_are_kept_as_they_are(client: openai.OpenAI, purpose: str) -> None:
    created = client.files.create(file=("a.png", b"\x89PNG"), purpose=purpose)  # type: ignore[arg-type]
    assert (created.purpose, created.expires_at) == (purpose, None)
    assert [f.id for f in client.files.list(purpose=purpose)] == [created.id]


def test_a_batch_of_more_lines_than_the_limit_is_refused(client: openai.OpenAI) -> None:
    limit = files_routes.MAX_BATCH_LINES
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=("big.jsonl", b"{}\n" * (limit + 1)), purpose="batch")
    error = assert_error(caught.value, 400, "file")
    assert str(limit) in error["message"]
    # blank lines are not requests: the limit itself, padded with them, is taken
    at_limit = b"{}\n" * (limit - 1) + b"\n \n{}"
    created = client.files.create(file=("full.jsonl", at_limit), purpose="batch")
    assert created.bytes == len(at_limit)
    assert [f.id for f in client.files.list()] == [created.id]


@pytest.mark.parametrize("file", [batch_file(), ("requests.json", batch_file())])
def test_a_batch_file_not_named_jsonl_is_refused(client: openai.OpenAI, file: Any) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(file=file, purpose="batch")  # bare bytes are sent as "upload"
    error = assert_error(caught.value, 400, "file")
    assert ".jsonl" in error["message"]


def test_an_expiry_asked_for_is_kept(client: openai.OpenAI) -> None:
    created = client.files.create(
        file=("a.jsonl", batch_file()),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    kept = client.files.create(
        file=("a.txt", b"hi"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 2_592_000},
    )
    assert kept.expires_at == kept.created_at + 2_592_000
    assert client.files.retrieve(kept.id).expires_at == kept.expires_at


@pytest.mark.parametrize(
    ("expires_after", "param"),
    [
        ({"anchor": "created_at", "seconds": 3599}, "expires_after.seconds"),
        ({"anchor": "created_at", "seconds": 2_592_001}, "expires_after.seconds"),
        ({"anchor": "last_active_at", "seconds": 3600}, "expires_after.anchor"),
        ({"seconds": 3600}, "expires_after.anchor"),
    ],
)
def test_an_expiry_out_of_bounds_is_refused(
    client: openai.OpenAI, expires_after: Any, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.create(
            file=("a.jsonl", batch_file()), purpose="batch", expires_after=expires_after
        )
    assert_error(caught.value, 400, param)
    assert client.files.list().data == []


def key_id(data_dir: Path, raw_key: str) -> str:
    keys = SqliteKeyStore(data_dir / "access.sqlite3")
    try:
        key = keys.find(raw_key)
        assert key is not None
        return key.key_id
    finally:
        keys.close()


def test_an_expired_file_is_gone(server: LiveServer) -> None:
    data_dir = server.settings.data_dir
    raw_key = make_key(data_dir, f"expiry-{secrets.token_hex(4)}")
    owner = key_id(data_dir, raw_key)
    now = int(time.time())
    store = FileStore(data_dir)  # beside the server's, on the same directory
    try:
        expired = store.create(owner, "old.jsonl", "batch", b"{}\n", now - 1)
        live = store.create(owner, "new.jsonl", "batch", b"{}\n", now + 3600)
    finally:
        store.close()
    with keyed_client(server.base_url, raw_key) as client:
        for call in (client.files.retrieve, client.files.content, client.files.delete):
            with pytest.raises(openai.NotFoundError):
                call(expired.file_id)
        assert [f.id for f in client.files.list()] == [live.file_id]
        assert client.files.retrieve(live.file_id).expires_at == now + 3600


def test_a_server_without_keys_keeps_files_too(make_server: Any) -> None:
    server = make_server()
    with openai.OpenAI(
        base_url=server.base_url, api_key="none", max_retries=0, _strict_response_validation=True
    ) as client:
        created = client.files.create(file=("r.jsonl", batch_file()), purpose="batch")
        assert [f.id for f in client.files.list()] == [created.id]
        assert client.files.content(created.id).content == batch_file()


def test_uploads_may_pass_the_body_cap_of_other_routes(make_server: Any) -> None:
    server = make_server(max_body_bytes=64 * 1024)
    data = b"x" * 200_000
    with openai.OpenAI(
        base_url=server.base_url, api_key="none", max_retries=0, _strict_response_validation=True
    ) as client:
        created = client.files.create(file=("big.bin", data), purpose="user_data")
        assert client.files.content(created.id).content == data
        with pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(
                model="gpt-4o-audio-preview", messages=[{"role": "user", "content": "x" * 200_000}]
            )
        assert caught.value.status_code == 413


def test_a_file_over_the_limit_is_refused_in_openai_words(
    client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files_routes, "MAX_FILE_BYTES", 1000)
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.txt", b"x" * 1001), purpose="user_data")
    error = assert_error(caught.value, 413, "file")
    assert error["code"] == "request_too_large" and "1000" in error["message"]
    assert client.files.list().data == []


def test_a_body_declared_over_the_upload_limit_is_refused_before_it_is_read(
    server: LiveServer,
) -> None:
    declared = files_routes.MAX_UPLOAD_BODY_BYTES + 1
    head = (
        f"POST /v1/files HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    port = int(server.root.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            piece = sock.recv(65536)
            if not piece:
                break
            answer += piece
    status_line, _, rest = answer.partition(b"\r\n")
    assert b" 413 " in status_line
    error = json.loads(rest.partition(b"\r\n\r\n")[2])["error"]
    assert error["code"] == "request_too_large"
    assert str(declared - 1) in error["message"]


def test_a_form_without_its_file_or_not_a_form_is_refused(
    server: LiveServer, client: openai.OpenAI
) -> None:
    headers = {"authorization": f"Bearer {client.api_key}"}
    url = server.base_url + "/files"
    no_file = httpx.post(
        url, data={"purpose": "batch"}, files={"other": ("a", b"x")}, headers=headers
    )
    assert no_file.status_code == 400
    assert no_file.json()["error"]["code"] == "missing_required_parameter"
    assert no_file.json()["error"]["param"] == "file"
    as_json = httpx.post(url, json={"purpose": "batch"}, headers=headers)
    assert as_json.status_code == 400
    assert "multipart/form-data" in as_json.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": 0}, "limit"), ({"limit": 10_001}, "limit"), ({"order": "up"}, "order")],
)
def test_a_list_with_a_bad_query_is_refused(
    client: openai.OpenAI, query: dict[str, Any], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.files.list(**query)
    assert_error(caught.value, 400, param)


def test_evals_files_are_kept_under_their_own_purpose(client: openai.OpenAI) -> None:
    # The SDK's FileObject does not list "evals" among its purposes: read the raw answer.
    raw = client.files.with_raw_response.create(file=("set.jsonl", LINE), purpose="evals")
    created = raw.http_response.json()
    assert (created["purpose"], created["expires_at"]) == ("evals", None)
    assert client.files.content(created["id"]).content == LINE


def open_descriptors_of(path: Path) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd) == str(path)
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_a_download_the_client_leaves_closes_its_file(
    server: LiveServer, client: openai.OpenAI
) -> None:
    data = os.urandom(8 * 1024 * 1024)
    created = client.files.create(file=("big.bin", data), purpose="user_data")
    path = server.settings.data_dir / "files" / created.id
    with client.files.with_streaming_response.content(created.id) as response:
        assert response.headers["content-length"] == str(len(data))
        first = next(response.iter_bytes(64 * 1024))
        assert data.startswith(first)
    deadline = time.monotonic() + 10
    while open_descriptors_of(path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert open_descriptors_of(path) == 0
    assert client.files.content(created.id).content == data  # and it still serves the file
