"""What careless clients and hostile pages send over HTTP: each refused in OpenAI's shape.

Media types, Host names, CORS, JSON that Python's parser takes but UTF-8 can not carry,
nesting, slow and oversized heads and bodies, WebSockets to no route, and a
non-streaming client that leaves. The server keeps serving after each.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from typing import Any

import httpx
import openai
import pytest
import websockets
from pydantic import BaseModel

from omnivox.server import bodies
from tests.conftest import sdk_client
from tests.support.fake_engine import FakeEngine

MODEL = "gpt-4o-audio-preview"
HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}]}


def post(base_url: str, body: bytes | str, **headers: str) -> httpx.Response:
    return httpx.post(base_url + "/chat/completions", content=body, headers=headers, timeout=30)


def assert_openai_error(response: httpx.Response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    assert response.headers["x-request-id"].startswith("req_")


def still_serving(base_url: str) -> None:
    response = httpx.post(base_url + "/chat/completions", json=HELLO, timeout=30)
    assert response.status_code == 200


# ---- media type -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",  # what a page's fetch() or form sends without a CORS preflight
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
def test_a_body_not_declared_json_is_415(fake_server, content_type: str | None) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = httpx.post(
        fake_server.base_url + "/chat/completions",
        content=json.dumps(HELLO),
        headers=headers,
        timeout=30,
    )
    assert_openai_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/merge+json",
    ],
)
def test_json_media_types_are_accepted(fake_server, content_type: str) -> None:
    response = post(fake_server.base_url, json.dumps(HELLO), **{"content-type": content_type})
    assert response.status_code == 200


# ---- Host -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "attacker.example:8000",
        "192.168.1.5",
        "127.0.0.1.nip.io",
        "localhost:x@evil.example",
        "[::1]evil",
        "localhost:80:80",
    ],
)
def test_without_keys_a_foreign_host_is_refused(fake_server, host: str) -> None:
    """A page that rebinds its own name to 127.0.0.1 names itself in Host: refused."""
    for response in (
        post(
            fake_server.base_url,
            json.dumps(HELLO),
            host=host,
            **{"content-type": "application/json"},
        ),
        httpx.get(fake_server.base_url + "/models", headers={"host": host}),
        httpx.get(fake_server.base_url + "/files/", headers={"host": host}),
    ):
        assert_openai_error(response, 403, "host_not_allowed")


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST:1234", "127.0.0.1", "127.0.0.2:80", "[::1]:8000", "app.localhost"],
)
def test_without_keys_loopback_hosts_are_served(fake_server, host: str) -> None:
    response = httpx.get(fake_server.base_url + "/models", headers={"host": host})
    assert response.status_code == 200


def test_allowed_hosts_adds_names(make_server) -> None:
    server = make_server(allowed_hosts=["voice.internal"])
    page = {"host": "voice.internal", "origin": "http://voice.internal:8000"}  # a page served here
    assert httpx.get(server.base_url + "/models", headers=page).status_code == 200
    assert (
        httpx.get(server.base_url + "/models", headers={"host": "voice.internal:8000"}).status_code
        == 200
    )
    assert (
        httpx.get(server.base_url + "/models", headers={"host": "other.internal"}).status_code
        == 403
    )


# ---- CORS -------------------------------------------------------------------------------------

PREFLIGHT = {
    "origin": "https://app.example",
    "access-control-request-method": "POST",
    "access-control-request-headers": "authorization, content-type",
}


def test_cors_is_off_by_default(fake_server) -> None:
    response = httpx.options(fake_server.base_url + "/chat/completions", headers=PREFLIGHT)
    assert "access-control-allow-origin" not in response.headers
    answer = post(
        fake_server.base_url,
        json.dumps(HELLO),
        origin="https://app.example",
        **{"content-type": "application/json"},
    )
    assert "access-control-allow-origin" not in answer.headers
    assert_openai_error(answer, 403, "origin_not_allowed")  # keyless: foreign pages refused


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example"]
)
def test_without_keys_a_page_from_a_foreign_origin_is_refused_before_anything(
    tmp_path, origin: str
) -> None:
    """Even a simple cross-site POST, which a browser sends without a preflight."""
    from omnivox.access.ledger import SqliteLedger
    from tests.access.conftest import start_keyed_server

    server = start_keyed_server(tmp_path)  # no keys: open on loopback, with a ledger
    try:
        for content_type in ("text/plain", "application/json"):
            response = post(
                server.base_url, json.dumps(HELLO), origin=origin, **{"content-type": content_type}
            )
            assert_openai_error(response, 403, "origin_not_allowed")
        local = post(
            server.base_url,
            json.dumps(HELLO),
            origin="http://localhost:3000",
            **{"content-type": "application/json"},
        )
        assert local.status_code == 200
        ledger = SqliteLedger(tmp_path / "access.sqlite3")
        try:
            assert [row.status for row in ledger.entries_now()] == [
                "completed"
            ]  # no row for the refused
        finally:
            ledger.close_now()
    finally:
        server.stop()


def test_cors_origins_allow_a_browser_app(make_server) -> None:
    server = make_server(cors_origins=["https://app.example"])
    preflight = httpx.options(server.base_url + "/chat/completions", headers=PREFLIGHT)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "POST" in preflight.headers["access-control-allow-methods"]
    answer = post(
        server.base_url,
        json.dumps(HELLO),
        origin="https://app.example",
        **{"content-type": "application/json"},
    )
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
    other = httpx.options(
        server.base_url + "/chat/completions",
        headers={**PREFLIGHT, "origin": "https://evil.example"},
    )
    assert "access-control-allow-origin" not in other.headers


# ---- JSON Python takes but a client can not mean ----------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "\\ud800"}]}',
        '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "hi"}], "stop": ["\\udfff"]}',
        '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "hi"}], "user": "a\\ud83d"}',
        '{"model": "gpt-4o-audio-preview\\udc00", "messages": [{"role": "user", "content": "hi"}]}',
        '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "hi"}], "metadata": {"\\ud800": "x"}}',
    ],
)
def test_a_lone_surrogate_is_a_400(fake_server, body: str) -> None:
    response = post(fake_server.base_url, body, **{"content-type": "application/json"})
    assert_openai_error(response, 400)
    still_serving(fake_server.base_url)


def test_a_surrogate_pair_is_a_character(fake_server) -> None:
    body = '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    response = post(fake_server.base_url, body, **{"content-type": "application/json"})
    assert response.status_code == 200
    assert "\U0001f600" in response.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize("depth", [bodies.MAX_JSON_DEPTH + 1, 1_000, 100_000])
@pytest.mark.parametrize("where", ["metadata", "tools", "top"])
def test_json_nested_too_deep_is_a_400(fake_server, depth: int, where: str) -> None:
    nested = "[" * depth + "]" * depth
    if where == "top":
        body = nested
    elif where == "metadata":
        body = json.dumps({**HELLO, "metadata": {"k": "PLACEHOLDER"}}).replace(
            '"PLACEHOLDER"', nested
        )
    else:
        tool = {
            "type": "function",
            "function": {"name": "f", "parameters": {"type": "object", "x": "PLACEHOLDER"}},
        }
        body = json.dumps({**HELLO, "tools": [tool]}).replace('"PLACEHOLDER"', nested)
    response = post(fake_server.base_url, body, **{"content-type": "application/json"})
    assert_openai_error(response, 400)
    still_serving(fake_server.base_url)


def test_a_large_body_is_parsed_off_the_event_loop(
    fake_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 20 MB prompt must not hold up every other client while it is parsed."""
    threads: list[str] = []
    parse = bodies.parse_json_now

    def recording_parse(raw: bytes) -> Any:
        threads.append(threading.current_thread().name)
        return parse(raw)

    monkeypatch.setattr(bodies, "parse_json_now", recording_parse)
    small = json.dumps(HELLO)
    large = json.dumps({**HELLO, "messages": [{"role": "user", "content": "word " * 200_000}]})
    for body in (small, large):
        post(fake_server.base_url, body, **{"content-type": "application/json"})
    server_thread = fake_server.thread.name
    assert threads[0] == server_thread  # small: on the loop, cheaper than a hand-off
    assert threads[1] != server_thread  # large: in a worker thread


# ---- the SDKs' own fields ---------------------------------------------------------------------


class Said(BaseModel):
    said: str


def test_a_parsed_message_can_go_back_into_the_history(make_server) -> None:
    server = make_server(engine=FakeEngine(tools=True))
    client = sdk_client(server.base_url)
    history: list[Any] = [{"role": "user", "content": "hello"}]
    parsed = client.chat.completions.parse(model=MODEL, messages=history, response_format=Said)
    assert parsed.choices[0].message.parsed == Said(said="hello")
    history += [parsed.choices[0].message, {"role": "user", "content": "again"}]
    again = client.chat.completions.parse(model=MODEL, messages=history, response_format=Said)
    assert again.choices[0].message.parsed is not None


def test_parsed_tool_calls_can_go_back_into_the_history(make_server) -> None:
    server = make_server(engine=FakeEngine(tools=True))
    client = sdk_client(server.base_url)
    tool = openai.pydantic_function_tool(Said, name="say")
    history: list[Any] = [{"role": "user", "content": "call say"}]
    first = client.chat.completions.parse(model=MODEL, messages=history, tools=[tool])
    call = first.choices[0].message.tool_calls[0]
    assert call.function.parsed_arguments == Said(said="call say")
    history += [
        first.choices[0].message,
        {"role": "tool", "tool_call_id": call.id, "content": "done"},
    ]
    answer = client.chat.completions.create(model=MODEL, messages=history, tools=[tool])
    assert answer.choices[0].message.content == "The tool said: done"


# ---- /v1/usage --------------------------------------------------------------------------------


@pytest.mark.parametrize("since", ["nan", "NaN", "inf", "-inf", "1e400"])
def test_usage_since_must_be_a_finite_time(fake_server, since: str) -> None:
    response = httpx.get(fake_server.base_url + "/usage", params={"since": since})
    assert_openai_error(response, 400, "invalid_value")
    assert response.json()["error"]["param"] == "since"


# ---- WebSockets -------------------------------------------------------------------------------


def test_a_websocket_to_no_route_is_a_404_in_openai_shape(fake_server) -> None:
    url = fake_server.base_url.replace("http://", "ws://") + "/no/such/socket"

    async def connect() -> Any:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url):
                pass
        return refused.value.response

    response = asyncio.run(connect())
    assert response.status_code == 404
    assert response.headers["x-request-id"].startswith("req_")
    assert json.loads(response.body)["error"]["code"] == "unknown_url"


# ---- connections: heads, bodies, idle -----------------------------------------------------------


def read_all(sock: socket.socket, timeout_s: float = 20) -> bytes:
    """What the server sends until it closes the connection."""
    sock.settimeout(timeout_s)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def connect(base_url: str) -> socket.socket:
    host, port = httpx.URL(base_url).host, httpx.URL(base_url).port
    return socket.create_connection((host, port))


def test_a_connection_that_sends_nothing_is_closed(make_server) -> None:
    server = make_server(header_timeout_s=0.2)
    with connect(server.base_url) as sock:
        answer = read_all(sock)  # returns only because the server closes
    assert answer.startswith(b"HTTP/1.1 408")
    still_serving(server.base_url)


def test_headers_that_trickle_are_cut_off(make_server) -> None:
    server = make_server(header_timeout_s=0.3)
    with connect(server.base_url) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n")
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in answer


def test_a_huge_head_is_431(fake_server) -> None:
    with connect(fake_server.base_url) as sock:
        sock.sendall(
            b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431")
    assert b'"request_header_fields_too_large"' in answer
    still_serving(fake_server.base_url)


def test_a_header_line_without_end_is_cut_off(fake_server) -> None:
    """httptools buffers a line that never ends: the server must refuse it by its size."""
    with connect(fake_server.base_url) as sock:
        try:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
            for _ in range(100):  # up to 1 MB of one line, in pieces
                sock.sendall(b"a" * 10_000)
            answer = read_all(sock)  # a server that kept buffering would time out here
        except ConnectionError:  # closed while this was still sending: refused
            answer = b"HTTP/1.1 431 (reset before it could be read)"
    assert answer.startswith(b"HTTP/1.1 431")
    still_serving(fake_server.base_url)


def test_an_answer_before_the_body_was_read_closes_the_connection(fake_server) -> None:
    """Else a client trickling the rest of a refused body would hold the connection."""
    with connect(fake_server.base_url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b"Content-Type: text/plain\r\nContent-Length: 1000000\r\n\r\nabc"
        )
        answer = read_all(sock, timeout_s=10)  # returns only because the server closes
    assert answer.startswith(b"HTTP/1.1 415")
    assert b"connection: close" in answer.lower()


def test_a_body_that_never_arrives_is_408(make_server) -> None:
    server = make_server(body_timeout_s=0.3)
    with connect(server.base_url) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":'
        )
        answer = read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b'"request_timeout"' in answer
    still_serving(server.base_url)


def test_an_idle_keep_alive_connection_is_closed(make_server) -> None:
    server = make_server(keep_alive_s=0.2)
    with connect(server.base_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # The answer, then the close once the connection idles: well before uvicorn's own
        # 5 s default would close it, so the setting is what closed it.
        answer = read_all(sock, timeout_s=4)  # the answer, then the close once the connection idles
    assert answer.startswith(b"HTTP/1.1 200")


# ---- a non-streaming client that leaves --------------------------------------------------------


def test_a_non_streaming_client_that_leaves_cancels_its_generation(make_server) -> None:
    engine = FakeEngine()
    server = make_server(engine=engine)
    body = {**HELLO, "messages": [{"role": "user", "content": "slow " * 200}]}  # ~40 s of words
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            server.base_url + "/chat/completions", json=body, timeout=httpx.Timeout(30, read=0.5)
        )
    deadline = time.monotonic() + 20
    while engine.cancelled_generations == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert engine.cancelled_generations == 1
    assert engine.finished_generations == 0
    assert engine.active_generations == 0
    still_serving(server.base_url)


# ---- the OpenAPI document ---------------------------------------------------------------------


def test_the_openapi_document_describes_the_chat_route_and_no_422(fake_server) -> None:
    document = httpx.get(fake_server.root + "/openapi.json").json()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    schema_ref = chat["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    request_schema = document["components"]["schemas"][schema_ref.rsplit("/", 1)[1]]
    assert {"model", "messages", "audio", "modalities", "tools"} <= set(
        request_schema["properties"]
    )
    assert "422" not in json.dumps(document)
    for path in ("/v1/models", "/v1/usage", "/v1/chat/completions"):
        for operation in document["paths"][path].values():
            assert "400" in operation["responses"]


# ---- keyed: every refusal has its headers and its ledger row ------------------------------------


def test_keyed_refusals_of_malformed_bodies_have_headers_and_ledger_rows(tmp_path) -> None:
    from omnivox.access.ledger import SqliteLedger
    from tests.access.conftest import make_key, start_keyed_server

    key = make_key(tmp_path, "careless", tier="5")
    server = start_keyed_server(tmp_path)
    try:
        bad_bodies = [
            (
                '{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "\\ud800"}]}',
                "application/json",
            ),
            ("[" * 5000 + "]" * 5000, "application/json"),
            (
                json.dumps({**HELLO, "metadata": {"k": "x"}}).replace('"x"', "[" * 200 + "]" * 200),
                "application/json",
            ),
            (json.dumps(HELLO), "text/plain"),
            ("{not json", "application/json"),
        ]
        for body, content_type in bad_bodies:
            response = post(
                server.base_url,
                body,
                authorization=f"Bearer {key}",
                **{"content-type": content_type},
            )
            assert 400 <= response.status_code < 500, response.text
            assert "x-ratelimit-limit-requests" in response.headers
        ledger = SqliteLedger(tmp_path / "access.sqlite3")
        try:
            rows = ledger.entries_now()
        finally:
            ledger.close_now()
        assert [row.status for row in rows] == ["rejected"] * len(bad_bodies)
    finally:
        server.stop()
