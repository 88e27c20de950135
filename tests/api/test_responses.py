"""The Responses API (``/v1/responses``, docs/wire-format.md §14) through the official SDK
with strict validation, on the deterministic fake engine (tool mode: it calls tools and
answers JSON formats), with and without keys."""

from __future__ import annotations

import base64
import json
import math
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import keyed_client, make_key, start_keyed_server
from tests.conftest import sdk_client
from tests.support.fake_engine import CONTEXT_WINDOW_TOKENS, FakeEngine
from tests.support.live_server import LiveServer, start_server
from tests.support.media import ffmpeg_encode, tone_s16le

MODEL = "gpt-4o-audio-preview"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
}
STREAM_ORDER = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]
ERROR_FIELDS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = start_server(FakeEngine(tools=True), tmp_path_factory.mktemp("responses"))
    yield started
    started.stop()


@pytest.fixture
def client(server: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(server.base_url) as client:
        yield client


def raw_events(server: LiveServer, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of each server-sent event of a streamed response."""
    events: list[tuple[str, dict[str, Any]]] = []
    with httpx.stream(
        "POST", server.base_url + "/responses", json={**body, "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[len("data: ") :])))
    return events


def error_of(exc: openai.APIStatusError, status: int, param: str | None) -> dict[str, Any]:
    assert exc.status_code == status, exc.response.text
    error = exc.response.json()["error"]
    assert set(error) == ERROR_FIELDS
    assert error["param"] == param
    return error


# ---- answers -----------------------------------------------------------------------------------


def test_a_string_input_is_answered_as_openais_response_object(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="hello there", metadata={"k": "v"})
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed" and response.completed_at is not None
    assert response.model == "gpt-4o-audio-preview-2025-06-03"
    assert response.output_text == "You said: hello there"
    [message] = response.output
    assert message.type == "message" and message.role == "assistant"
    assert message.id.startswith("msg_") and message.status == "completed"
    [part] = message.content
    assert part.type == "output_text" and part.annotations == []
    usage = response.usage
    assert usage is not None and usage.output_tokens == 4
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert response.metadata == {"k": "v"} and response.store is True
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "text"
    assert response.tool_choice == "auto" and response.tools == []


def test_items_with_instructions_and_earlier_output_are_answered(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        instructions="Be kind.",
        input=[
            {"role": "developer", "content": "Speak plainly."},
            {"role": "user", "content": [{"type": "input_text", "text": "first question"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "an answer", "annotations": []}],
            },
            {"role": "user", "content": "second question"},
        ],
    )
    assert response.output_text == "You said: second question"
    assert response.instructions == "Be kind."
    alone = client.responses.create(model=MODEL, input="second question")
    assert alone.usage is not None and response.usage is not None
    assert response.usage.input_tokens > alone.usage.input_tokens  # all of it was read


def test_the_stream_is_openais_event_sequence(server: LiveServer) -> None:
    events = raw_events(server, {"model": MODEL, "input": "one two three"})
    names = [name for name, _ in events]
    assert [n for i, n in enumerate(names) if i == 0 or names[i - 1] != n] == STREAM_ORDER
    assert all(name == data["type"] for name, data in events)
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    deltas = [d for n, d in events if n == "response.output_text.delta"]
    text = "".join(d["delta"] for d in deltas)
    assert text == "You said: one two three"
    created, completed = events[0][1]["response"], events[-1][1]["response"]
    assert created["status"] == "in_progress" and created["output"] == []
    assert completed["status"] == "completed"
    assert completed["output"][0]["content"][0]["text"] == text
    item_id = completed["output"][0]["id"]
    assert all(d["item_id"] == item_id and d["output_index"] == 0 for d in deltas)
    assert next(d for n, d in events if n == "response.output_text.done")["text"] == text


def test_the_sdk_stream_helper_builds_the_final_response(client: openai.OpenAI) -> None:
    with client.responses.stream(model=MODEL, input="stream me") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "You said: stream me"
    assert client.responses.retrieve(final.id).output_text == final.output_text


def test_a_stored_response_is_continued_by_previous_response_id(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="my name is Ada")
    second = client.responses.create(
        model=MODEL, input="what is my name", previous_response_id=first.id
    )
    fresh = client.responses.create(model=MODEL, input="what is my name")
    assert second.previous_response_id == first.id
    assert second.usage is not None and fresh.usage is not None and first.usage is not None
    # the second prompt holds the first turn (question and answer) too
    assert second.usage.input_tokens >= fresh.usage.input_tokens + first.usage.total_tokens
    third = client.responses.create(model=MODEL, input="and again", previous_response_id=second.id)
    assert third.usage is not None and third.usage.input_tokens > second.usage.total_tokens


def test_max_output_tokens_ends_the_response_incomplete(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="count to 40", max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.output_text.split() == [str(i) for i in range(1, 17)]
    assert response.output[0].status == "incomplete"


def test_logprobs_are_included_when_asked(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model=MODEL,
        input="hello",
        include=["message.output_text.logprobs"],
        top_logprobs=2,
    )
    part = response.output[0].content[0]
    assert part.type == "output_text" and part.logprobs
    assert "".join(lp.token for lp in part.logprobs) == part.text
    assert all(len(lp.top_logprobs) == 2 for lp in part.logprobs)


def test_spoken_input_is_answered(server: LiveServer, client: openai.OpenAI) -> None:
    clip = base64.b64encode(ffmpeg_encode(tone_s16le(1.5), "wav")).decode()
    spoken = {"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}
    response = client.responses.create(model=MODEL, input=[{"role": "user", "content": [spoken]}])
    assert response.status == "completed"
    assert response.output_text == "You said: 1.5 seconds of audio"
    # listed as given (the SDK's item types have no audio part, so read it raw)
    listed = httpx.get(f"{server.base_url}/responses/{response.id}/input_items", timeout=10)
    assert listed.json()["data"][0]["content"] == [spoken]
    follow = client.responses.create(model=MODEL, input="and", previous_response_id=response.id)
    assert follow.usage is not None and response.usage is not None
    assert follow.usage.input_tokens > response.usage.input_tokens  # the clip is heard again


# ---- tools and formats -------------------------------------------------------------------------


def test_a_function_call_round_trip(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="call Paris", tools=[WEATHER])
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.id is not None and call.id.startswith("fc_") and call.call_id.startswith("call_")
    assert json.loads(call.arguments) == {"city": "call Paris"}
    assert first.tools[0].type == "function" and first.tools[0].strict is True
    follow = client.responses.create(
        model=MODEL,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert follow.output_text == "The tool said: sunny"
    # the same conversation given whole, without a stored response
    whole = client.responses.create(
        model=MODEL,
        store=False,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "call Paris"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "rainy"},
        ],
    )
    assert whole.output_text == "The tool said: rainy"


def test_function_call_arguments_stream_as_events(server: LiveServer) -> None:
    body = {"model": MODEL, "input": "call Paris", "tools": [WEATHER], "tool_choice": "required"}
    events = raw_events(server, body)
    names = [n for n, _ in events]
    assert names[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert names[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added = events[2][1]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress"
    deltas = [d["delta"] for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(deltas) > 1
    done = events[-3][1]
    assert done["arguments"] == "".join(deltas) and json.loads(done["arguments"])


def test_a_named_tool_choice_and_allowed_tools(client: openai.OpenAI) -> None:
    other = {**WEATHER, "name": "get_time"}
    named = client.responses.create(
        model=MODEL,
        input="hello",
        tools=[WEATHER, other],
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert [item.type for item in named.output] == ["function_call"]
    assert named.output[0].name == "get_time"
    allowed = client.responses.create(
        model=MODEL,
        input="hello",
        tools=[WEATHER, other],
        tool_choice={
            "type": "allowed_tools",
            "mode": "required",
            "tools": [{"type": "function", "name": "get_weather"}],
        },
    )
    assert allowed.output[0].name == "get_weather"


def test_a_json_schema_format_gives_valid_json(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"said": {"type": "string"}},
        "required": ["said"],
        "additionalProperties": False,
    }
    response = client.responses.create(
        model=MODEL,
        input="hi",
        text={"format": {"type": "json_schema", "name": "said", "schema": schema, "strict": True}},
    )
    assert json.loads(response.output_text) == {"said": "hi"}
    assert response.text is not None and response.text.format is not None
    assert response.text.format.type == "json_schema"


def test_a_strict_tool_with_a_loose_schema_is_refused_in_responses_words(
    client: openai.OpenAI,
) -> None:
    loose = {**WEATHER, "parameters": {"type": "object", "properties": {"a": {"type": "string"}}}}
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hi", tools=[loose])
    param = error_of(caught.value, 400, caught.value.body["param"])["param"]  # type: ignore[index]
    assert param.startswith("tools[0]") and "function" not in param


# ---- stored responses --------------------------------------------------------------------------


def test_retrieve_list_input_items_and_delete(client: openai.OpenAI) -> None:
    given = [{"role": "user", "content": f"question {i}"} for i in range(5)]
    response = client.responses.create(model=MODEL, input=given)
    assert client.responses.retrieve(response.id).model_dump() == response.model_dump()
    items = list(client.responses.input_items.list(response.id, order="asc"))
    assert [item.content[0].text for item in items] == [f"question {i}" for i in range(5)]
    assert all(item.id.startswith("msg_") for item in items)
    page = client.responses.input_items.list(response.id, limit=2)
    assert [i.content[0].text for i in page.data] == ["question 4", "question 3"]
    assert page.has_more and page.last_id == page.data[-1].id
    rest = client.responses.input_items.list(response.id, limit=10, after=page.last_id)
    assert [i.content[0].text for i in rest.data] == ["question 2", "question 1", "question 0"]
    assert not rest.has_more
    with pytest.raises(openai.BadRequestError):  # only background responses stream again
        client.responses.retrieve(response.id, stream=True)
    client.responses.delete(response.id)
    for call in (client.responses.retrieve, client.responses.input_items.list):
        with pytest.raises(openai.NotFoundError):
            call(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(response.id)


def test_an_unstored_response_can_not_be_retrieved_or_continued(client: openai.OpenAI) -> None:
    response = client.responses.create(model=MODEL, input="hello", store=False)
    assert response.store is False
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as caught:
        client.responses.create(model=MODEL, input="x", previous_response_id=response.id)
    assert error_of(caught.value, 404, "previous_response_id")["code"] == (
        "previous_response_not_found"
    )


def test_cancel_answers_that_only_background_responses_can_be_cancelled(
    client: openai.OpenAI,
) -> None:
    response = client.responses.create(model=MODEL, input="hello")
    with pytest.raises(openai.BadRequestError):
        client.responses.cancel(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.cancel("resp_nope")


def test_truncation_auto_drops_the_oldest_turns_disabled_refuses(client: openai.OpenAI) -> None:
    long_words = " ".join(["word"] * 150)
    previous = None
    for _ in range(3):  # three turns of ~300 tokens each: more than the 512-token window
        response = client.responses.create(
            model=MODEL, input=long_words, previous_response_id=previous, truncation="auto"
        )
        previous = response.id
    assert response.usage is not None and response.usage.input_tokens < CONTEXT_WINDOW_TOKENS
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model=MODEL, input="hello", previous_response_id=previous)
    assert error_of(caught.value, 400, "input")["code"] == "context_length_exceeded"


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "status", "param", "code"),
    [
        ({"model": "nope"}, 404, None, "model_not_found"),
        ({"surprise": 1}, 400, "surprise", "unknown_parameter"),
        ({"tools": [{"type": "web_search"}]}, 400, "tools[0].type", "unsupported_value"),
        ({"tool_choice": {"type": "file_search"}}, 400, "tool_choice.type", "unsupported_value"),
        ({"background": True}, 400, "background", "unsupported_parameter"),
        ({"conversation": "conv_1"}, 400, "conversation", "unsupported_parameter"),
        ({"reasoning": {"effort": "high"}}, 400, "reasoning.effort", "unsupported_value"),
        ({"max_output_tokens": 15}, 400, "max_output_tokens", "integer_below_min_value"),
        ({"temperature": 3}, 400, "temperature", "decimal_above_max_value"),
        ({"input": []}, 400, "input", "empty_array"),
        ({"input": None}, 400, "input", "missing_required_parameter"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            400,
            "input[0].content[0].type",
            "unsupported_value",
        ),
        (
            {"input": [{"role": "system", "content": [{"type": "output_text", "text": "x"}]}]},
            400,
            "input[0].content[0].type",
            "invalid_value",
        ),
        ({"input": [{"type": "item_reference", "id": "x"}]}, 400, "input[0].type", None),
        ({"text": {"format": {"type": "json_object"}}}, 400, "input", None),
        ({"previous_response_id": "resp_nope"}, 404, "previous_response_id", None),
        ({"top_logprobs": 2}, 400, "top_logprobs", "invalid_value"),
        ({"input": {}}, 400, "input", "invalid_type"),
        (
            {"input": [{"role": "assistant", "content": [{"type": "input_text", "text": "x"}]}]},
            400,
            "input[0].content[0].type",
            "invalid_value",
        ),
        (
            {
                "input": [
                    {"role": "user", "content": "a", "id": "m1"},
                    {"role": "user", "content": "b", "id": "m1"},
                ]
            },
            400,
            "input",
            None,
        ),
        (
            {"input": [{"type": "function_call_output", "call_id": "call_x", "output": "42"}]},
            400,
            "input",
            None,
        ),
        (
            {"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}]},
            400,
            "input",
            None,
        ),
        (
            {
                "input": [
                    {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
                    {
                        "type": "function_call_output",
                        "call_id": "c1",
                        "output": [
                            {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}}
                        ],
                    },
                ]
            },
            400,
            "input[1].output[0].type",
            "unsupported_value",
        ),
        (
            {
                "instructions": "be brief",
                "input": [
                    {"role": "user", "content": "first"},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "input_audio",
                                "input_audio": {"data": "@@@", "format": "wav"},
                            }
                        ],
                    },
                ],
            },
            400,
            "input[1].content[0].input_audio.data",
            None,
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "mode": "auto",
                    "tools": [{"type": "function"}],
                },
            },
            400,
            "tool_choice.tools[0].name",
            None,
        ),
    ],
)
def test_bad_requests_are_refused_in_openais_shape(
    server: LiveServer,
    extra: dict[str, Any],
    status: int,
    param: str | None,
    code: str | None,
) -> None:
    body = {"model": MODEL, "input": "hello", **extra}
    body = {k: v for k, v in body.items() if v is not None}
    r = httpx.post(server.base_url + "/responses", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert r.headers["x-request-id"]
    error = r.json()["error"]
    assert set(error) == ERROR_FIELDS and error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


def test_the_default_agent_model_names_are_answered(client: openai.OpenAI) -> None:
    response = client.responses.create(
        model="gpt-5.6-luna", input="hello", reasoning={"effort": "none"}, text={"verbosity": "low"}
    )
    assert response.output_text == "You said: hello" and response.model == "gpt-5.6-luna"
    assert response.text is not None and response.text.verbosity == "low"
    with pytest.raises(openai.NotFoundError):  # only the Responses API answers to it
        client.chat.completions.create(
            model="gpt-5.6-luna", messages=[{"role": "user", "content": "x"}]
        )


def test_a_failure_after_the_first_byte_fails_the_response(server: LiveServer) -> None:
    events = raw_events(server, {"model": MODEL, "input": "fail after one word"})
    assert events[0][0] == "response.created"
    name, data = events[-1]
    assert name == "response.failed"
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert data["response"]["status"] == "failed"
    assert data["response"]["error"]["code"] == "server_error"
    stored = httpx.get(f"{server.base_url}/responses/{data['response']['id']}", timeout=10)
    assert stored.json()["status"] == "failed"
    [message] = stored.json()["output"]  # what was said before the failure is kept
    assert message["status"] == "incomplete" and message["content"][0]["text"] == "You"


def test_a_failure_of_an_unstreamed_response_is_a_server_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.responses.create(model=MODEL, input="fail after one word")
    assert caught.value.response.json()["error"]["type"] == "server_error"


def test_a_client_that_leaves_cancels_the_generation(tmp_path: Path) -> None:
    engine = FakeEngine(word_delay_s=0.2, tools=True)
    server = start_server(engine, tmp_path)
    try:
        body = {"model": MODEL, "input": "count to 200", "stream": True}
        with httpx.stream("POST", server.base_url + "/responses", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if "response.output_text.delta" in line:
                    break
        deadline_checks = 0
        while engine.cancelled_generations == 0 and deadline_checks < 200:
            httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=5)
            deadline_checks += 1
        assert engine.cancelled_generations == 1
        assert engine.finished_generations == 0
    finally:
        server.stop()


# ---- keys --------------------------------------------------------------------------------------


def test_responses_are_each_keys_own_and_charged_to_it(tmp_path: Path) -> None:
    server = start_keyed_server(tmp_path)
    try:
        owner = keyed_client(server.base_url, make_key(tmp_path, f"a-{secrets.token_hex(3)}"))
        other = keyed_client(server.base_url, make_key(tmp_path, f"b-{secrets.token_hex(3)}"))
        wrong = keyed_client(server.base_url, "sk-wrong")
        raw = owner.responses.with_raw_response.create(model=MODEL, input="hello there")
        assert raw.headers["x-ratelimit-limit-requests"]
        response = raw.parse()
        for call in (other.responses.retrieve, other.responses.delete):
            with pytest.raises(openai.NotFoundError):
                call(response.id)
        with pytest.raises(openai.NotFoundError):
            other.responses.create(model=MODEL, input="x", previous_response_id=response.id)
        assert owner.responses.retrieve(response.id).id == response.id
        with pytest.raises(openai.AuthenticationError):
            wrong.responses.create(model=MODEL, input="x")
    finally:
        for made in (owner, other, wrong):
            made.close()
        server.stop()
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    rows = [e for e in ledger.entries_now() if e.completion_id == response.id]
    ledger.close_now()
    assert len(rows) == 1 and rows[0].status == "completed"
    assert response.usage is not None
    assert rows[0].completion_text_tokens == response.usage.output_tokens
    assert rows[0].cost_usd > 0


def test_the_texts_of_errors_name_the_responses_parameters(server: LiveServer) -> None:
    body = {"model": MODEL, "input": "x", "max_output_tokens": 10**9}
    error = httpx.post(server.base_url + "/responses", json=body, timeout=10).json()["error"]
    assert error["param"] == "max_output_tokens" and "max_completion_tokens" not in error["message"]
    body = {"model": MODEL, "input": "x", "text": {"format": {"type": "json_object"}}}
    error = httpx.post(server.base_url + "/responses", json=body, timeout=10).json()["error"]
    assert "'input'" in error["message"] and "'text.format'" in error["message"]
    assert "messages" not in error["message"] and "response_format" not in error["message"]


def test_a_tool_without_parameters_is_called_with_none(client: openai.OpenAI) -> None:
    clock = {"type": "function", "name": "get_time", "description": "The time now"}
    response = client.responses.create(
        model=MODEL, input="what time is it", tools=[clock], tool_choice="required"
    )
    [call] = response.output
    assert call.type == "function_call" and json.loads(call.arguments) == {}


class CountingEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__(tools=True)
        self.prepared = 0

    async def prepare(self, request: Any) -> Any:
        self.prepared += 1
        return await super().prepare(request)


def test_truncation_cuts_a_long_conversation_in_few_preparations(tmp_path: Path) -> None:
    engine = CountingEngine()
    server = start_server(engine, tmp_path)
    try:
        client = sdk_client(server.base_url)
        previous = None
        for turn in range(40):  # 40 turns of ~14 tokens: the last ones past the window
            response = client.responses.create(
                model=MODEL,
                input=f"turn {turn} " + "word " * 4,
                previous_response_id=previous,
                truncation="auto",
            )
            previous = response.id
        engine.prepared = 0
        last = client.responses.create(
            model=MODEL, input="the end", previous_response_id=previous, truncation="auto"
        )
        assert last.output_text == "You said: the end"
        assert last.usage is not None and last.usage.input_tokens < CONTEXT_WINDOW_TOKENS
        # the whole conversation once, then a bisection over its 41 turns
        assert 2 <= engine.prepared <= 2 + math.ceil(math.log2(42))
    finally:
        client.close()
        server.stop()
