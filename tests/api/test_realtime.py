"""``/v1/realtime``: OpenAI's Realtime API (GA) over a WebSocket, through the official SDK.

Every event the server sends is validated strictly against the SDK's
``RealtimeServerEvent`` (a pydantic ``TypeAdapter``, as openai-agents applies it).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
import websockets
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter

from tests.access.conftest import make_key, start_keyed_server
from tests.support.fake_engine import CONTEXT_WINDOW_TOKENS, WORD_DURATION_S, word_tone
from tests.support.live_server import LiveServer

# The SDK opens its socket with websockets' sync ``connect()`` outside a ``with`` (it closes
# it itself); websockets 17.1 and later warn about that on the first receive.
pytestmark = pytest.mark.filterwarnings(
    "ignore:connect\\(\\) must be used as a context manager:DeprecationWarning"
)

SERVER_EVENT: TypeAdapter[Any] = TypeAdapter(RealtimeServerEvent)
SAMPLE_RATE = 24_000


def realtime_client(base_url: str, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key=key, max_retries=0)


class Session:
    """A connection whose received events are each validated strictly."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.seen: list[dict[str, Any]] = []

    def send(self, event: dict[str, Any]) -> None:
        self.connection.send(event)

    def recv(self) -> dict[str, Any]:
        raw = self.connection.recv_bytes()
        SERVER_EVENT.validate_json(raw, strict=True)
        data = json.loads(raw)
        assert isinstance(data["event_id"], str) and data["event_id"]
        self.seen.append(data)
        return data

    def update(self, **fields: Any) -> dict[str, Any]:
        """``session.update`` of a realtime session; the effective session it answers."""
        self.send({"type": "session.update", "session": {"type": "realtime", **fields}})
        return self.until("session.updated")[-1]["session"]

    def until(self, kind: str) -> list[dict[str, Any]]:
        """The events received up to and including the first of type ``kind``."""
        events = []
        while True:
            event = self.recv()
            events.append(event)
            if event["type"] == kind:
                return events


@pytest.fixture
def session(fake_server: LiveServer) -> Iterator[Session]:
    with (
        realtime_client(fake_server.base_url) as client,
        client.realtime.connect(model="gpt-realtime") as connection,
    ):
        yield Session(connection)


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


def user_text(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    }


def test_session_created_first_then_update_answers_the_effective_session(
    session: Session,
) -> None:
    created = session.recv()
    assert created["type"] == "session.created"
    config = created["session"]
    assert config["type"] == "realtime"
    assert config["model"] == "gpt-realtime"
    assert config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert config["audio"]["input"]["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }
    session.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "instructions": "Be brief.",
                "audio": {"output": {"voice": "marin"}},
                "max_output_tokens": 200,
            },
        }
    )
    updated = session.recv()
    assert updated["type"] == "session.updated"
    effective = updated["session"]
    assert effective["output_modalities"] == ["text"]
    assert effective["instructions"] == "Be brief."
    assert effective["audio"]["output"]["voice"] == "marin"
    assert effective["audio"]["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert effective["max_output_tokens"] == 200
    assert effective["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("session_update", "code", "param"),
    [
        ({"type": "realtime", "temperature": 0.5}, "unknown_parameter", "session.temperature"),
        (
            {"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "loud"}}}},
            "invalid_value",
            "session.audio.input.noise_reduction.type",
        ),
        (
            {"type": "realtime", "audio": {"output": {"speed": 1.5}}},
            "invalid_value",
            "session.audio.output.speed",
        ),
        ({"instructions": "x"}, "missing_required_parameter", "session.type"),
        (
            {"type": "realtime", "tools": [{"type": "function", "name": "a b!"}]},
            None,
            "session.tools[0].name",
        ),
        (
            {
                "type": "realtime",
                "audio": {"input": {"turn_detection": {"type": "server_vad", "threshold": True}}},
            },
            "invalid_type",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            {"type": "realtime", "audio": {"output": {"speed": "1.0"}}},
            "invalid_type",
            "session.audio.output.speed",
        ),
    ],
)
def test_a_refused_session_update_is_an_error_event_and_changes_nothing(
    session: Session, session_update: dict[str, Any], code: str | None, param: str
) -> None:
    session.recv()
    session.send({"type": "session.update", "event_id": "evt_1", "session": session_update})
    error = session.recv()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["param"] == param
    if code is not None:
        assert error["error"]["code"] == code
    assert error["error"]["event_id"] == "evt_1"
    session.send({"type": "session.update", "session": {"type": "realtime"}})
    assert session.recv()["session"]["audio"]["input"]["noise_reduction"] is None


def test_noise_reduction_is_accepted_and_shown(session: Session) -> None:
    """Clients such as Pipecat end the session on a refused update; omnivox applies no
    noise reduction (documented) but keeps and shows the setting, as OpenAI's does."""
    session.recv()
    for wanted in ({"type": "near_field"}, {"type": "far_field"}, None):
        update = {"type": "realtime", "audio": {"input": {"noise_reduction": wanted}}}
        session.send({"type": "session.update", "session": update})
        updated = session.recv()
        assert updated["type"] == "session.updated"
        assert updated["session"]["audio"]["input"]["noise_reduction"] == wanted


def test_a_text_item_with_a_text_response(session: Session) -> None:
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    session.send(user_text("hello there"))
    added = session.until("conversation.item.done")
    assert types(added) == ["conversation.item.added", "conversation.item.done"]
    assert added[0]["item"]["content"] == [{"type": "input_text", "text": "hello there"}]
    session.send({"type": "response.create"})
    events = session.until("response.done")
    kinds = types(events)
    assert kinds[:4] == [
        "response.created",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
    ]
    assert kinds[-5:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    assert kinds.count("response.done") == 1
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "You said: hello there"
    done = events[-1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"] == [{"type": "output_text", "text": text}]
    usage = done["usage"]
    assert usage["output_token_details"] == {"text_tokens": 4, "audio_tokens": 0}
    assert usage["input_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_a_text_item_with_an_audio_response(session: Session) -> None:
    assert session.recv()["session"]["output_modalities"] == ["audio"]
    session.send(user_text("hi"))
    session.send({"type": "response.create"})
    events = session.until("response.done")
    transcript = "".join(
        e["delta"] for e in events if e["type"] == "response.output_audio_transcript.delta"
    )
    assert transcript == "You said: hi"
    pcm = b"".join(
        base64.b64decode(e["delta"]) for e in events if e["type"] == "response.output_audio.delta"
    )
    assert pcm == b"".join(word_tone(w) for w in transcript.split())
    assert len(pcm) == 3 * int(WORD_DURATION_S * SAMPLE_RATE) * 2
    parts = [e for e in events if e["type"] == "response.content_part.added"]
    assert parts[0]["part"] == {"type": "audio", "transcript": ""}
    done = events[-1]["response"]
    assert done["output"][0]["content"] == [{"type": "output_audio", "transcript": transcript}]
    assert done["usage"]["output_token_details"]["audio_tokens"] == 15  # 0.75 s at 20 per s


def test_committed_audio_becomes_a_user_item_and_is_answered(session: Session) -> None:
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    tone = (0.2 * np.sin(np.arange(SAMPLE_RATE) * 0.05) * 32767).astype("<i2").tobytes()
    for start in range(0, len(tone), 9600):
        chunk = base64.b64encode(tone[start : start + 9600]).decode()
        session.send({"type": "input_audio_buffer.append", "audio": chunk})
    session.send({"type": "input_audio_buffer.commit"})
    committed = session.until("conversation.item.done")
    assert types(committed) == [
        "input_audio_buffer.committed",
        "conversation.item.added",
        "conversation.item.done",
    ]
    item = committed[1]["item"]
    assert item["id"] == committed[0]["item_id"]
    assert item["content"] == [{"type": "input_audio", "transcript": None}]
    session.send({"type": "response.create"})
    events = session.until("response.done")
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert text == "You said: 1.0 seconds of audio"
    usage = events[-1]["response"]["usage"]
    assert usage["input_token_details"]["audio_tokens"] == 10  # 1 s at 10 per s


def test_an_empty_commit_and_a_cleared_buffer(session: Session) -> None:
    session.recv()
    session.send(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 4800).decode()}
    )
    session.send({"type": "input_audio_buffer.clear"})
    assert session.recv()["type"] == "input_audio_buffer.cleared"
    session.send({"type": "input_audio_buffer.commit"})
    error = session.recv()
    assert error["error"]["code"] == "input_audio_buffer_commit_empty"


def test_audio_that_is_not_a_string_or_is_missing_is_named(session: Session) -> None:
    session.recv()
    for event, code, message in (
        ({"audio": 5}, "invalid_type", "expected a string, but got an integer"),
        ({}, "missing_required_parameter", "Missing required parameter: 'audio'"),
    ):
        session.send({"type": "input_audio_buffer.append", **event})
        error = session.recv()["error"]
        assert (error["code"], error["param"]) == (code, "audio")
        assert message in error["message"]
    session.send(
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\0" * 4800).decode()}
    )
    session.send({"type": "input_audio_buffer.clear"})
    assert session.recv()["type"] == "input_audio_buffer.cleared"


def test_cancel_stops_the_response(session: Session, fake_server: LiveServer) -> None:
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    session.send(user_text("slow count to 50"))
    session.send({"type": "response.create"})
    session.until("response.output_text.delta")
    session.send({"type": "response.create"})
    busy = session.until("error")
    assert busy[-1]["error"]["code"] == "conversation_already_has_active_response"
    session.send({"type": "response.cancel"})
    events = session.until("response.done")
    done = events[-1]["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert done["usage"]["output_tokens"] < 50
    session.send({"type": "response.cancel", "event_id": "evt_2"})
    error = session.recv()
    assert error["error"]["code"] == "response_cancel_not_active"
    assert error["error"]["event_id"] == "evt_2"


def test_response_metadata_past_openais_limits_is_an_error(session: Session) -> None:
    session.recv()
    too_many = {f"k{i}": "v" for i in range(17)}
    for metadata, code in ((too_many, "object_above_max_properties"), ({"k": "v" * 513}, None)):
        session.send({"type": "response.create", "response": {"metadata": metadata}})
        error = session.recv()
        assert error["type"] == "error" and error["error"]["param"].startswith("response.metadata")
        if code is not None:
            assert error["error"]["code"] == code
    session.send({"type": "response.create", "response": {"metadata": {"k": "v"}}})
    done = session.until("response.done")[-1]
    assert done["response"]["metadata"] == {"k": "v"}


def test_an_unknown_event_is_an_error_and_the_session_goes_on(session: Session) -> None:
    session.recv()
    session.send({"type": "no.such.event", "event_id": "evt_3"})
    error = session.recv()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert (error["error"]["param"], error["error"]["event_id"]) == ("type", "evt_3")
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    session.send(user_text("still here"))
    session.send({"type": "response.create"})
    events = session.until("response.done")
    assert events[-1]["response"]["status"] == "completed"


def test_items_are_retrieved_and_deleted_and_a_deleted_one_is_not_heard(
    session: Session,
) -> None:
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    session.send(user_text("first words"))
    first = session.until("conversation.item.done")[-1]["item"]
    session.send({"type": "conversation.item.retrieve", "item_id": first["id"]})
    retrieved = session.until("conversation.item.retrieved")[-1]
    assert retrieved["item"]["content"][0]["text"] == "first words"
    session.send(user_text("second words"))
    second = session.until("conversation.item.done")[-1]["item"]
    session.send({"type": "conversation.item.delete", "item_id": second["id"]})
    assert session.until("conversation.item.deleted")[-1]["item_id"] == second["id"]
    for doing in ("retrieve", "delete", "truncate"):  # OpenAI's codes, which clients match
        extra = {"content_index": 0, "audio_end_ms": 0} if doing == "truncate" else {}
        event_id = f"evt_{doing}"
        session.send(
            {
                "type": f"conversation.item.{doing}",
                "item_id": second["id"],
                "event_id": event_id,
                **extra,
            }
        )
        error = session.until("error")[-1]["error"]
        assert (error["code"], error["param"], error["event_id"]) == (
            f"item_{doing}_invalid_item_id",
            "item_id",
            event_id,
        )
        assert f"the item with id '{second['id']}' does not exist" in error["message"]
    session.send({**user_text("again"), "item": {**user_text("again")["item"], "id": first["id"]}})
    error = session.until("error")[-1]["error"]
    assert (error["code"], error["param"]) == ("item_create_duplicate_item_id", "item.id")
    session.send({"type": "response.create"})
    events = session.until("response.done")
    said = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    assert said == "You said: first words"  # the deleted item is no longer in the conversation


def test_the_realtime_names_are_listed(fake_server: LiveServer) -> None:
    with realtime_client(fake_server.base_url) as client:
        listed = {m.id for m in client.models.list()}
    assert {"gpt-realtime", "gpt-realtime-mini", "gpt-4o-realtime-preview"} <= listed


def handshake(url: str, **kwargs: Any) -> Any:
    """The HTTP answer that refuses a WebSocket handshake."""

    async def connect() -> Any:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with websockets.connect(url, **kwargs):
                pass
        return refused.value.response

    return asyncio.run(connect())


def ws_url(server: LiveServer, model: str) -> str:
    return server.base_url.replace("http://", "ws://") + f"/realtime?model={model}"


def test_an_unknown_model_is_a_404_at_the_handshake(fake_server: LiveServer) -> None:
    response = handshake(ws_url(fake_server, "no-such-model"))
    assert response.status_code == 404
    assert response.headers["x-request-id"].startswith("req_")
    assert json.loads(response.body)["error"]["code"] == "model_not_found"
    with (
        realtime_client(fake_server.base_url) as client,
        pytest.raises(websockets.exceptions.InvalidStatus),
        client.realtime.connect(model="whisper-1"),
    ):
        pass


def test_a_wrong_key_is_a_401_at_the_handshake_and_a_right_one_connects(tmp_path: Path) -> None:
    key = make_key(tmp_path, "caller")
    server = start_keyed_server(tmp_path)
    try:
        response = handshake(
            ws_url(server, "gpt-realtime"),
            additional_headers={"Authorization": "Bearer sk-wrong"},
        )
        assert response.status_code == 401
        assert response.headers["x-request-id"].startswith("req_")
        assert json.loads(response.body)["error"]["code"] == "invalid_api_key"
        with (
            realtime_client(server.base_url, key) as client,
            client.realtime.connect(model="gpt-realtime-mini") as connection,
        ):
            session = Session(connection)
            session.recv()
            session.send(
                {
                    "type": "session.update",
                    "session": {"type": "realtime", "output_modalities": ["text"]},
                }
            )
            session.until("session.updated")
            session.send(user_text("metered"))
            session.send({"type": "response.create"})
            events = session.until("response.done")
            assert events[-1]["response"]["status"] == "completed"
            (limits,) = [e for e in events if e["type"] == "rate_limits.updated"]
            by_name = {limit["name"]: limit for limit in limits["rate_limits"]}
            assert by_name["requests"]["limit"] == 500  # tier 1, gpt-4o-mini-audio class
            assert by_name["requests"]["remaining"] == 499
            assert by_name["tokens"]["remaining"] < by_name["tokens"]["limit"]
        usage = httpx.get(server.base_url + "/usage", headers={"Authorization": f"Bearer {key}"})
        assert "gpt-realtime-mini" in usage.text
    finally:
        server.stop()


def test_the_browser_subprotocol_carries_the_key(tmp_path: Path) -> None:
    key = make_key(tmp_path, "browser")
    server = start_keyed_server(tmp_path)

    async def connect() -> tuple[str | None, dict[str, Any]]:
        async with websockets.connect(
            ws_url(server, "gpt-realtime"),
            subprotocols=[  # type: ignore[list-item]
                "realtime",
                f"openai-insecure-api-key.{key}",
            ],
        ) as ws:
            return ws.subprotocol, json.loads(await ws.recv())

    try:
        subprotocol, first = asyncio.run(connect())
        assert subprotocol == "realtime"
        assert first["type"] == "session.created"
        response = handshake(
            ws_url(server, "gpt-realtime"),
            subprotocols=["realtime", "openai-insecure-api-key.sk-wrong"],
        )
        assert response.status_code == 401
    finally:
        server.stop()


def test_a_session_ends_with_an_error_event_then_a_normal_close(make_server: Any) -> None:
    server = make_server()
    server.server.config.app._realtime.session_limit_s = 0.5  # an hour, shortened

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        url = ws_url(server, "gpt-realtime")
        events = []
        async with websockets.connect(url) as ws:
            with pytest.raises(websockets.exceptions.ConnectionClosedOK) as closed:
                while True:
                    events.append(json.loads(await ws.recv()))
            return events, closed.value.rcvd.code if closed.value.rcvd else None

    events, code = asyncio.run(run())
    for event in events:
        SERVER_EVENT.validate_python(event)
    assert types(events) == ["session.created", "error"]
    assert events[-1]["error"]["code"] == "session_expired"
    assert code == 1000


def test_an_engine_failure_fails_the_response_and_the_session_goes_on(session: Session) -> None:
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    session.send(user_text("fail after one word"))
    session.send({"type": "response.create"})
    done = session.until("response.done")[-1]["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["type"] == "server_error"
    session.send(user_text("fail in prepare"))
    session.send({"type": "response.create"})
    error = session.until("error")[-1]
    assert error["error"]["type"] == "server_error"
    session.send(user_text("fine again"))
    session.send({"type": "response.create"})
    assert session.until("response.done")[-1]["response"]["status"] == "completed"


def test_a_conversation_past_the_context_drops_its_oldest_turns(session: Session) -> None:
    """``truncation: "auto"`` (the default, as OpenAI's): once the conversation outgrows
    the model's context, its oldest turns stop being heard, enough of them that the next
    turns hear the same history (the engine's cache keeps it) until it overflows again;
    ``retention_ratio`` says how much is kept, and ``disabled`` fails it instead."""
    session.recv()
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "output_modalities": ["text"]}}
    )
    session.until("session.updated")
    for turn in range(60):  # ~60 x 14 tokens: past the fake engine's 512
        session.send(user_text(f"turn {turn} " + "word " * 8))
        session.until("conversation.item.done")

    def answer(text: str) -> tuple[int, str]:
        session.send(user_text(text))
        session.until("conversation.item.done")
        session.send({"type": "response.create"})
        events = session.until("response.done")
        done = events[-1]["response"]
        assert done["status"] == "completed", done["status_details"]
        said = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
        return done["usage"]["input_tokens"], said

    # the fake engine counts a turn as its words + 3; an answer without max_output_tokens
    # keeps a quarter of the window, and auto keeps 3/4 of the rest
    room = CONTEXT_WINDOW_TOKENS - CONTEXT_WINDOW_TOKENS // 4
    first, said = answer("the end")
    assert said == "You said: the end"
    assert room // 2 < first <= 0.75 * room
    second, said = answer("one more")
    assert said == "You said: one more"
    assert second == first + (4 + 3) + (2 + 3)  # the answer before and this turn: no new cut
    ratio = {
        "type": "retention_ratio",
        "retention_ratio": 0.5,
        "token_limits": {"post_instructions": 100},
    }
    session.send({"type": "session.update", "session": {"type": "realtime", "truncation": ratio}})
    assert session.until("session.updated")[-1]["session"]["truncation"] == ratio
    third, said = answer("and again")
    assert said == "You said: and again"
    assert 0 < third <= 50
    session.send(
        {"type": "session.update", "session": {"type": "realtime", "truncation": "disabled"}}
    )
    session.until("session.updated")
    session.send({"type": "response.create"})
    error = session.until("error")[-1]["error"]
    assert error["code"] == "context_length_exceeded"
