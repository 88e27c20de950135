"""``POST /v1/realtime/client_secrets``: ephemeral keys that open ``/v1/realtime`` for a browser.

Secrets are minted with the official SDK (strict response validation); sessions are
opened with ``websockets`` as a browser's page would, with the secret as a bearer key
or in the ``openai-insecure-api-key.`` subprotocol, and every event received is
validated against the SDK's ``RealtimeServerEvent``.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import websockets
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import keyed_client, make_key, start_keyed_server
from tests.support.live_server import LiveServer

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
FOREIGN_ORIGIN = "https://app.example"
MINTED = {"type": "realtime", "instructions": "Answer in one line.", "output_modalities": ["text"]}


def sdk(server: LiveServer, key: str = "sk-unused") -> openai.OpenAI:
    return keyed_client(server.base_url, key)


def ws_url(server: LiveServer, query: str = "") -> str:
    return server.base_url.replace("http://", "ws://") + "/realtime" + query


def bearer(value: str) -> dict[str, Any]:
    return {"additional_headers": {"Authorization": f"Bearer {value}"}}


def subprotocol(value: str) -> dict[str, Any]:
    return {"subprotocols": ["realtime", f"openai-insecure-api-key.{value}"]}


async def _recv(ws: Any) -> dict[str, Any]:
    raw = await ws.recv()
    SERVER_EVENT.validate_json(raw, strict=True)
    event: dict[str, Any] = json.loads(raw)
    return event


def converse(url: str, text: str | None = "hello there", **connect: Any) -> list[dict[str, Any]]:
    """Open a session; with ``text``, one user item and a response: the events to response.done."""

    async def run() -> list[dict[str, Any]]:
        async with websockets.connect(url, **connect) as ws:
            events = [await _recv(ws)]
            if text is None:
                return events
            item = {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": text}],
            }
            await ws.send(json.dumps({"type": "conversation.item.create", "item": item}))
            await ws.send(json.dumps({"type": "response.create"}))
            while events[-1]["type"] != "response.done":
                events.append(await _recv(ws))
            return events

    return asyncio.run(run())


def refused(url: str, **connect: Any) -> tuple[int, dict[str, Any]]:
    """The status and OpenAI error of a refused handshake."""

    async def run() -> Any:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refusal:
            async with websockets.connect(url, **connect):
                pass
        return refusal.value.response

    response = asyncio.run(run())
    assert response.headers["x-request-id"].startswith("req_")
    return response.status_code, json.loads(response.body)["error"]


def without_instance_fields(session: dict[str, Any]) -> dict[str, Any]:
    """A session object less what each session has of its own."""
    return {k: v for k, v in session.items() if k not in ("id", "expires_at")}


def test_a_minted_secret_opens_sessions_that_start_with_its_config(make_server: Any) -> None:
    server = make_server()
    with sdk(server) as client:
        before = int(time.time())
        secret = client.realtime.client_secrets.create(
            expires_after={"anchor": "created_at", "seconds": 600}, session=MINTED
        )
    assert secret.value.startswith("ek_") and len(secret.value) > 30
    assert before + 600 <= secret.expires_at <= int(time.time()) + 600
    minted = secret.session.model_dump(mode="json", exclude_unset=True)
    assert minted["type"] == "realtime"
    assert minted["model"] == "omnivox-audio"  # the server's own, as no model was named
    assert minted["instructions"] == "Answer in one line."
    assert minted["output_modalities"] == ["text"]

    created_ids = []
    for connect in (bearer(secret.value), subprotocol(secret.value)):  # one secret, two sessions
        events = converse(ws_url(server), **connect)
        created = events[0]
        assert created["type"] == "session.created"
        assert without_instance_fields(created["session"]) == without_instance_fields(minted)
        assert created["session"]["expires_at"] > time.time()
        created_ids.append(created["session"]["id"])
        done = events[-1]["response"]
        assert done["status"] == "completed"
        assert done["output"][0]["content"] == [
            {"type": "output_text", "text": "You said: hello there"}
        ]
        assert not [e for e in events if e["type"].startswith("response.output_audio")]
    assert len(set(created_ids)) == 2


def test_the_sdk_connects_with_a_secret_as_its_key(make_server: Any) -> None:
    server = make_server()
    with sdk(server) as client:
        secret = client.realtime.client_secrets.create(session={**MINTED, "model": "gpt-realtime"})
    assert secret.session.model == "gpt-realtime"
    with (
        openai.OpenAI(base_url=server.base_url, api_key=secret.value, max_retries=0) as browser,
        browser.realtime.connect(model="gpt-realtime") as connection,
    ):
        created = connection.recv()
        assert created.type == "session.created"
        assert created.session.instructions == "Answer in one line."


def test_a_transcription_secret_opens_a_transcription_session(make_server: Any) -> None:
    server = make_server()
    with sdk(server) as client:
        secret = client.realtime.client_secrets.create(
            session={"type": "transcription", "audio": {"input": {"turn_detection": None}}}
        )
    assert secret.session.type == "transcription"
    (created,) = converse(ws_url(server), None, **bearer(secret.value))
    assert created["session"]["type"] == "transcription"
    assert created["session"]["audio"]["input"]["turn_detection"] is None
    (created,) = converse(ws_url(server, "?intent=transcription"), None, **bearer(secret.value))
    assert created["session"]["type"] == "transcription"


def test_the_query_may_only_repeat_what_the_secret_says(make_server: Any) -> None:
    server = make_server()
    with sdk(server) as client:
        secret = client.realtime.client_secrets.create(session={**MINTED, "model": "gpt-realtime"})
    (created,) = converse(ws_url(server, "?model=gpt-realtime"), None, **bearer(secret.value))
    assert created["session"]["model"] == "gpt-realtime"
    status, error = refused(ws_url(server, "?model=gpt-realtime-mini"), **bearer(secret.value))
    assert (status, error["param"], error["code"]) == (400, "model", "invalid_value")
    status, error = refused(ws_url(server, "?intent=transcription"), **bearer(secret.value))
    assert (status, error["param"]) == (400, "intent")


def test_a_keyed_secret_is_the_minting_keys_caller(tmp_path: Path) -> None:
    key = make_key(tmp_path, "backend")
    keys = SqliteKeyStore(tmp_path / "access.sqlite3")
    try:
        found = keys.find(key)
        assert found is not None
        key_id = found.key_id
    finally:
        keys.close()
    server = start_keyed_server(tmp_path)
    try:
        with sdk(server, key) as client:
            secret = client.realtime.client_secrets.create(
                session=MINTED, expires_after={"seconds": 10}
            )
        events = converse(ws_url(server), **bearer(secret.value))
        assert events[-1]["response"]["status"] == "completed"
        assert [e for e in events if e["type"] == "rate_limits.updated"]  # the key's limits

        # An ephemeral key is for /v1/realtime alone.
        models = httpx.get(server.base_url + "/models", **bearer_headers(secret.value))
        assert models.status_code == 401
        assert models.json()["error"]["code"] == "invalid_api_key"
        with sdk(server, secret.value) as browser, pytest.raises(openai.AuthenticationError):
            browser.realtime.client_secrets.create()  # nor does it mint more
        # One that was never minted, or one that has expired, opens nothing.
        status, error = refused(ws_url(server), **bearer("ek_" + "0" * 32))
        assert (status, error["code"]) == (401, "invalid_api_key")
        assert "ek_" + "0" * 32 not in error["message"]  # masked, as keys are
        store = server.server.config.app._realtime.secrets
        store.clock = lambda: time.time() + 3600  # an hour on
        status, error = refused(ws_url(server), **subprotocol(secret.value))
        assert (status, error["code"]) == (401, "invalid_api_key")
        assert store.count() == 0  # refused, and gone
    finally:
        server.stop()
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    try:
        rows = ledger.entries_now()
    finally:
        ledger.close_now()
    answered = [row for row in rows if row.status == "completed"]
    assert len(answered) == 1
    assert (answered[0].key_id, answered[0].key_name) == (key_id, "backend")
    assert answered[0].model == "omnivox-audio"


def test_revoking_the_minting_key_voids_its_secrets(tmp_path: Path) -> None:
    key = make_key(tmp_path, "leaving")
    make_key(tmp_path, "staying")
    server = start_keyed_server(tmp_path)
    try:
        with sdk(server, key) as client:
            secret = client.realtime.client_secrets.create(session=MINTED)
        (created,) = converse(ws_url(server), None, **bearer(secret.value))
        assert created["type"] == "session.created"
        keys = SqliteKeyStore(tmp_path / "access.sqlite3")
        try:
            keys.revoke("leaving")
        finally:
            keys.close()
        status, error = refused(ws_url(server), **bearer(secret.value))
        assert (status, error["code"]) == (401, "invalid_api_key")
    finally:
        server.stop()


def test_sessions_open_when_their_key_is_revoked_answer_no_more(tmp_path: Path) -> None:
    """Both a session opened with the key and one opened with a secret it minted."""
    key = make_key(tmp_path, "going")
    make_key(tmp_path, "staying")
    server = start_keyed_server(tmp_path)
    item = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]}
    ask = [
        json.dumps({"type": "conversation.item.create", "item": item}),
        json.dumps({"type": "response.create"}),
    ]

    async def until(ws: Any, kind: str) -> dict[str, Any]:
        async with asyncio.timeout(30):  # a failure, not a hang, if it never comes
            while (event := await _recv(ws))["type"] != kind:
                pass
        return event

    async def run(secret: str) -> list[str]:
        url = ws_url(server, "?model=gpt-realtime")
        async with (
            websockets.connect(url, **bearer(key)) as by_key,
            websockets.connect(ws_url(server), **bearer(secret)) as by_secret,
        ):
            for ws in (by_key, by_secret):
                for event in ask:
                    await ws.send(event)
                assert (await until(ws, "response.done"))["response"]["status"] == "completed"
            keys = SqliteKeyStore(tmp_path / "access.sqlite3")
            try:
                keys.revoke("going")
            finally:
                keys.close()
            codes = []
            for ws in (by_key, by_secret):
                for event in ask:
                    await ws.send(event)
                codes.append((await until(ws, "error"))["error"]["code"])
            return codes

    try:
        with sdk(server, key) as client:
            secret = client.realtime.client_secrets.create(session=MINTED)
        assert asyncio.run(run(secret.value)) == ["invalid_api_key", "invalid_api_key"]
    finally:
        server.stop()


def bearer_headers(value: str) -> dict[str, Any]:
    return {"headers": {"Authorization": f"Bearer {value}"}}


def test_a_keyless_server_lets_a_secret_in_from_a_foreign_page(make_server: Any) -> None:
    server = make_server()
    status, error = refused(ws_url(server, "?model=gpt-realtime"), origin=FOREIGN_ORIGIN)
    assert (status, error["code"]) == (403, "origin_not_allowed")
    with sdk(server) as client:  # the page's backend, on this host
        secret = client.realtime.client_secrets.create(session=MINTED)
    events = converse(ws_url(server), origin=FOREIGN_ORIGIN, **subprotocol(secret.value))
    assert events[0]["session"]["instructions"] == "Answer in one line."
    assert events[-1]["response"]["status"] == "completed"
    # The page can not mint one for itself.
    minting = httpx.post(
        server.base_url + "/realtime/client_secrets", json={}, headers={"Origin": FOREIGN_ORIGIN}
    )
    assert minting.status_code == 403


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"expires_after": {"seconds": 5}}, "expires_after.seconds", "integer_below_min_value"),
        ({"expires_after": {"seconds": 7201}}, "expires_after.seconds", "integer_above_max_value"),
        ({"expires_after": {"anchor": "now"}}, "expires_after.anchor", "invalid_value"),
        ({"session": {"instructions": "hi"}}, "session.type", "missing_required_parameter"),
        ({"session": {"type": "realtime", "voice": "alloy"}}, "session.voice", "unknown_parameter"),
        (
            {"session": {"type": "realtime", "audio": {"output": {"speed": 9}}}},
            "session.audio.output.speed",
            "decimal_above_max_value",
        ),
        (
            {"session": {"type": "realtime", "audio": {"output": {"voice": "nobody"}}}},
            "session.audio.output.voice",
            "invalid_value",
        ),
        (
            {"session": {"type": "realtime", "model": "no-such-model"}},
            "session.model",
            "invalid_value",
        ),
        ({"session": {"type": "realtime", "model": "whisper-1"}}, "session.model", "invalid_value"),
        (
            {"session": {"type": "transcription", "model": "x"}},
            "session.model",
            "unknown_parameter",
        ),
        ({"ttl": 60}, "ttl", "unknown_parameter"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_param(
    fake_server: LiveServer, body: dict[str, Any], param: str, code: str
) -> None:
    with sdk(fake_server) as client, pytest.raises(openai.BadRequestError) as bad:
        client.post("/realtime/client_secrets", body=body, cast_to=object)
    assert bad.value.status_code == 400
    assert (bad.value.param, bad.value.code) == (param, code)


def test_null_where_a_session_always_has_a_value_keeps_the_default(fake_server: LiveServer) -> None:
    session = {"type": "realtime", "audio": {"input": None, "output": {"voice": None}}}
    with sdk(fake_server) as client:
        secret = client.realtime.client_secrets.create(session=session)
    audio = secret.session.model_dump(mode="json")["audio"]
    assert audio["output"]["voice"] == "alloy"
    assert audio["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
