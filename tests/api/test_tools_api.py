"""Tool calls, legacy functions and JSON output on the wire (§3.4, §2), and the 400s of
tool, format and sampling parameters, with the deterministic fake engine in tool mode."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import sdk_client
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer, start_server

MODEL = "gpt-4o-audio-preview"
CALL_ID = re.compile(r"^call_[A-Za-z0-9]{24}$")
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TIME = {
    "type": "function",
    "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
}
PCM16 = {"voice": "alloy", "format": "pcm16"}


@pytest.fixture(scope="module")
def tool_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(FakeEngine(tools=True), tmp_path_factory.mktemp("tools"))
    yield server
    server.stop()


@pytest.fixture
def tool_client(tool_server: LiveServer) -> openai.OpenAI:
    return sdk_client(tool_server.base_url)


def ask(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **extra}


def raw_chunks(server: LiveServer, body: dict[str, Any]) -> list[dict[str, Any]]:
    body = {**body, "stream": True}
    with httpx.stream("POST", server.base_url + "/chat/completions", json=body, timeout=30) as r:
        assert r.status_code == 200, r.read()
        events = r.read().decode().split("\n\n")[:-1]
    assert events[-1] == "data: [DONE]"
    return [json.loads(e.removeprefix("data: ")) for e in events[:-1]]


def post(server: LiveServer, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=30)


# -- tool calls, not streamed -------------------------------------------------------------


@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
def test_a_forced_call_is_a_tool_call_message(tool_client: openai.OpenAI, choice: Any) -> None:
    completion = tool_client.chat.completions.create(
        **ask("Paris", tools=[WEATHER, TIME], tool_choice=choice)
    )
    choice0 = completion.choices[0]
    assert choice0.finish_reason == "tool_calls"
    assert choice0.message.content is None
    (call,) = choice0.message.tool_calls or []
    assert CALL_ID.match(call.id) and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_named_choice_calls_that_function(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask(
            "now",
            tools=[WEATHER, TIME],
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == {}


def test_auto_answers_in_words_or_calls(tool_client: openai.OpenAI) -> None:
    words = tool_client.chat.completions.create(**ask("hello", tools=[WEATHER]))
    assert words.choices[0].finish_reason == "stop"
    assert words.choices[0].message.content == "You said: hello"
    assert words.choices[0].message.tool_calls is None
    called = tool_client.chat.completions.create(**ask("call get_time", tools=[WEATHER, TIME]))
    assert called.choices[0].finish_reason == "tool_calls"
    assert [c.function.name for c in called.choices[0].message.tool_calls or []] == ["get_time"]


def test_tool_choice_none_never_calls(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask("call get_weather", tools=[WEATHER], tool_choice="none")
    )
    assert completion.choices[0].message.content == "You said: call get_weather"
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize(("parallel", "n_calls"), [(True, 2), (False, 1)])
def test_parallel_calls_each_get_their_own_id(
    tool_client: openai.OpenAI, parallel: bool, n_calls: int
) -> None:
    completion = tool_client.chat.completions.create(
        **ask("twice Paris", tools=[WEATHER], tool_choice="required", parallel_tool_calls=parallel)
    )
    calls = completion.choices[0].message.tool_calls or []
    assert len(calls) == n_calls
    assert len({c.id for c in calls}) == n_calls and all(CALL_ID.match(c.id) for c in calls)


def test_the_tool_result_comes_back_as_the_next_answer(tool_client: openai.OpenAI) -> None:
    first = tool_client.chat.completions.create(
        **ask("Paris", tools=[WEATHER], tool_choice="required")
    )
    call = (first.choices[0].message.tool_calls or [])[0]
    second = tool_client.chat.completions.create(
        model=MODEL,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "tool_calls": [call.model_dump(include={"id", "type", "function"})],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert second.choices[0].message.content == "The tool said: sunny"
    assert second.choices[0].finish_reason == "stop"


# -- tool calls, streamed ---------------------------------------------------------------------


def test_streamed_call_fragments_follow_section_3_4(tool_server: LiveServer) -> None:
    chunks = raw_chunks(tool_server, ask("twice Paris", tools=[WEATHER], tool_choice="required"))
    assert chunks[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
    }
    fragments = [f for c in chunks for f in c["choices"][0]["delta"].get("tool_calls", [])]
    for index in (0, 1):
        mine = [f for f in fragments if f["index"] == index]
        first, rest = mine[0], mine[1:]
        assert set(first) == {"index", "id", "type", "function"}
        assert CALL_ID.match(first["id"]) and first["type"] == "function"
        assert first["function"] == {"name": "get_weather", "arguments": ""}
        assert rest and all(set(f) == {"index", "function"} for f in rest)
        assert all(set(f["function"]) == {"arguments"} for f in rest)
        assert json.loads("".join(f["function"]["arguments"] for f in rest)) == {
            "city": "twice Paris"
        }
    assert fragments[0]["id"] != next(f for f in fragments if f["index"] == 1)["id"]
    finishes = [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"][0]["finish_reason"]
    ]
    assert finishes == ["tool_calls"]


def test_the_sdk_accumulates_a_streamed_call(tool_client: openai.OpenAI) -> None:
    with tool_client.chat.completions.stream(
        **ask("Paris", tools=[WEATHER], tool_choice="required")
    ) as stream:
        events = [e.type for e in stream]
        completion = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in events
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.parsed_arguments == {"city": "Paris"}  # strict tools are parsed
    assert completion.choices[0].finish_reason == "tool_calls"


# -- tool calls with audio output -------------------------------------------------------------


def test_a_spoken_turn_that_only_calls_has_no_audio(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask("Paris", tools=[WEATHER], tool_choice="required"),
        modalities=["text", "audio"],
        audio={"voice": "alloy", "format": "wav"},
    )
    message = completion.choices[0].message
    assert message.audio is None and message.content is None
    assert (message.tool_calls or [])[0].function.name == "get_weather"
    assert completion.usage is not None and completion.usage.completion_tokens_details is not None
    assert completion.usage.completion_tokens_details.audio_tokens == 0


def test_streamed_spoken_round_trip_with_the_sdk_helper(tool_client: openai.OpenAI) -> None:
    spoken = {"modalities": ["text", "audio"], "audio": PCM16}
    with tool_client.chat.completions.stream(
        **ask("Paris", tools=[WEATHER], tool_choice="required"), **spoken
    ) as stream:
        chunks = list(stream)
        first = stream.get_final_completion()
    assert not any(
        getattr(e, "chunk", None) and e.chunk.choices and e.chunk.choices[0].delta.audio
        for e in chunks
    )
    message = first.choices[0].message
    assert message.audio is None and first.choices[0].finish_reason == "tool_calls"
    call = (message.tool_calls or [])[0]
    with tool_client.chat.completions.stream(
        model=MODEL,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "tool_calls": [
                    call.model_dump(
                        include={"id": True, "type": True, "function": {"name", "arguments"}}
                    )
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        **spoken,
    ) as stream:
        list(stream)
        answer = stream.get_final_completion()
    audio = answer.choices[0].message.audio
    assert audio is not None and audio.transcript == "The tool said: sunny"
    assert audio.id.startswith("audio_") and audio.expires_at > answer.created and audio.data
    assert answer.choices[0].finish_reason == "stop"


# -- legacy functions ------------------------------------------------------------------------------


def test_legacy_functions_answer_with_function_call(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask("Paris", functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "function_call"
    assert choice.message.tool_calls is None and choice.message.content is None
    assert choice.message.function_call is not None
    assert choice.message.function_call.name == "get_weather"
    assert json.loads(choice.message.function_call.arguments) == {"city": "Paris"}


def test_streamed_legacy_functions_send_function_call_fragments(tool_server: LiveServer) -> None:
    body = ask("Paris", functions=[WEATHER["function"]], function_call={"name": "get_weather"})
    chunks = raw_chunks(tool_server, body)
    fragments = [
        c["choices"][0]["delta"]["function_call"]
        for c in chunks
        if "function_call" in c["choices"][0]["delta"]
    ]
    assert fragments[0] == {"name": "get_weather", "arguments": ""}
    assert all(set(f) == {"arguments"} for f in fragments[1:])
    assert json.loads("".join(f["arguments"] for f in fragments)) == {"city": "Paris"}
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "function_call"


# -- response_format ---------------------------------------------------------------------------------


def test_json_object_answers_parse(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask("reply in JSON", response_format={"type": "json_object"})
    )
    assert json.loads(completion.choices[0].message.content or "") == {"said": "reply in JSON"}


# -- the 400s -------------------------------------------------------------------------------------------


def assert_refused(
    server: LiveServer, extra: dict[str, Any], code: str | None, param: str, message: str | None
) -> None:
    """``extra`` makes a 400 with this code and param (and message, when given)."""
    response = post(server, ask("hi", **extra))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"], error["type"]) == (code, param, "invalid_request_error")
    if message is not None:
        assert error["message"] == message


@pytest.mark.parametrize(
    ("extra", "code", "param", "message"),
    [
        (
            {"tool_choice": "required"},
            "invalid_value",
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ),
        (
            {"parallel_tool_calls": False},
            "invalid_value",
            "parallel_tool_calls",
            "Invalid value for 'parallel_tool_calls': 'parallel_tool_calls' is only allowed when 'tools' are specified.",
        ),
        ({"function_call": "auto"}, "invalid_value", "function_call", None),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "invalid_value",
            "tool_choice",
            "Invalid value for 'tool_choice': no function named 'nope' was specified in the 'tools' parameter.",
        ),
        ({"tools": [WEATHER], "tool_choice": "sometimes"}, "invalid_value", "tool_choice", None),
        (
            {"tools": [{"type": "custom", "function": {"name": "x"}}]},
            "invalid_value",
            "tools[0].type",
            None,
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "x" * 65}}]},
            "invalid_value",
            "tools[0].function.name",
            None,
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "ok", "parameters": []}}]},
            "invalid_type",
            "tools[0].function.parameters",
            None,
        ),
        ({"functions": [{"name": "has space"}]}, "invalid_value", "functions[0].name", None),
        ({"functions": []}, "empty_array", "functions", None),
        (
            {"response_format": {"type": "json_object"}},
            None,
            "messages",
            "'messages' must contain the word 'json' in some form, to use 'response_format' of type 'json_object'.",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "bad name"}}},
            "invalid_value",
            "response_format.json_schema.name",
            None,
        ),
        (
            {"response_format": {"type": "json_schema"}},
            "missing_required_parameter",
            "response_format.json_schema",
            None,
        ),
        ({"response_format": {"type": "xml"}}, "invalid_value", "response_format.type", None),
        ({"top_p": -0.1}, "decimal_below_min_value", "top_p", None),
        ({"temperature": 2.01}, "decimal_above_max_value", "temperature", None),
        ({"seed": 2**63}, "integer_above_max_value", "seed", None),
        ({"logit_bias": {"42": -101}}, "integer_below_min_value", "logit_bias.42", None),
        ({"logit_bias": {"hello": 5}}, "invalid_value", "logit_bias", None),
        ({"logit_bias": {"42": 1.5}}, "invalid_type", "logit_bias.42", None),
        ({"top_logprobs": -1, "logprobs": True}, "integer_below_min_value", "top_logprobs", None),
        ({"max_tokens": 0}, "integer_below_min_value", "max_tokens", None),
        ({"max_completion_tokens": 16_385}, "invalid_value", "max_completion_tokens", None),
        ({"presence_penalty": -2.5}, "decimal_below_min_value", "presence_penalty", None),
        ({"frequency_penalty": 2.5}, "decimal_above_max_value", "frequency_penalty", None),
        ({"stop": []}, "empty_array", "stop", None),
        ({"stop": 7}, "invalid_type", "stop", None),
        ({"n": 2, "modalities": ["text", "audio"], "audio": PCM16}, "unsupported_value", "n", None),
        (
            {"logprobs": True, "modalities": ["text", "audio"], "audio": PCM16},
            "unsupported_value",
            "logprobs",
            None,
        ),
        (
            {
                "response_format": {"type": "json_object"},
                "modalities": ["text", "audio"],
                "audio": PCM16,
            },
            "unsupported_value",
            "response_format.type",
            "Unsupported value: 'response_format.type' does not support 'json_object' with audio output. Supported values are: 'text'.",
        ),
    ],
)
def test_invalid_tool_format_and_sampling_values(
    tool_server: LiveServer,
    extra: dict[str, Any],
    code: str | None,
    param: str,
    message: str | None,
) -> None:
    assert_refused(tool_server, extra, code, param, message)


def test_boundary_values_are_accepted(tool_client: openai.OpenAI) -> None:
    completion = tool_client.chat.completions.create(
        **ask("hi"),
        temperature=2,
        top_p=0,
        presence_penalty=-2,
        frequency_penalty=2,
        logit_bias={"42": -100, "7": 100},
        seed=-(2**63),
        stop=["a1", "b2", "c3", "d4"],
        logprobs=True,
        top_logprobs=20,
        n=3,
    )
    assert len(completion.choices) == 3


def test_an_engine_without_tools_refuses_them(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**ask("hi", tools=[WEATHER]))
    assert caught.value.code == "unsupported_parameter" and caught.value.param == "tools"


# -- strict schemas (OpenAI's Structured Outputs rules) -------------------------------------------

LOOSE_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ADDRESS_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "zip": {"type": "string"}},
            "required": ["street"],
            "additionalProperties": False,
        },
    },
    "required": ["name", "address"],
    "additionalProperties": False,
}


def strict_tool(parameters: dict[str, Any], name: str = "get_weather") -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": name, "parameters": parameters, "strict": True},
    }


def strict_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "json_schema",
        "json_schema": {"name": "my_name", "schema": schema, "strict": True},
    }


@pytest.mark.parametrize(
    ("extra", "param", "code", "message"),
    [
        (
            {"tools": [strict_tool(LOOSE_WEATHER["function"]["parameters"])]},
            "tools[0].function.parameters",
            "invalid_function_parameters",
            "Invalid schema for function 'get_weather': In context=(), 'additionalProperties' is required to be supplied and to be false.",
        ),
        (
            {"tools": [WEATHER, strict_tool(ADDRESS_SCHEMA, "save_address")]},
            "tools[1].function.parameters",
            "invalid_function_parameters",
            "Invalid schema for function 'save_address': In context=('properties', 'address'), 'required' is required to be supplied and to be an array including every key in properties. Missing 'zip'.",
        ),
        (
            {"tools": [strict_tool({"type": "array", "items": {"type": "string"}})]},
            "tools[0].function.parameters",
            "invalid_function_parameters",
            "Invalid schema for function 'get_weather': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"array\"'.",
        ),
        (
            {"response_format": strict_format(ADDRESS_SCHEMA)},
            "response_format",
            "invalid_json_schema",
            "Invalid schema for response_format 'my_name': In context=('properties', 'address'), 'required' is required to be supplied and to be an array including every key in properties. Missing 'zip'.",
        ),
        (
            {"response_format": strict_format({"type": "string"})},
            "response_format",
            "invalid_json_schema",
            "Invalid schema for response_format 'my_name': schema must be a JSON Schema of 'type: \"object\"', got 'type: \"string\"'.",
        ),
    ],
)
def test_strict_schemas_that_break_openais_rules_are_400s(
    tool_server: LiveServer, extra: dict[str, Any], param: str, code: str, message: str
) -> None:
    response = post(tool_server, ask("reply in json", **extra))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error == {
        "message": message,
        "type": "invalid_request_error",
        "param": param,
        "code": code,
    }


def test_schemas_without_strict_keep_the_lenient_rules(tool_client: openai.OpenAI) -> None:
    called = tool_client.chat.completions.create(
        **ask("Paris", tools=[LOOSE_WEATHER], tool_choice="required")
    )
    (call,) = called.choices[0].message.tool_calls or []
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "Paris"}
    loose = {"type": "json_schema", "json_schema": {"name": "my_name", "schema": ADDRESS_SCHEMA}}
    answer = tool_client.chat.completions.create(**ask("reply in json", response_format=loose))
    assert json.loads(answer.choices[0].message.content or "") == {"said": "reply in json"}


def test_the_sdk_sees_a_strict_schema_error_as_a_bad_request(tool_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        tool_client.chat.completions.create(
            **ask("Paris", tools=[strict_tool(LOOSE_WEATHER["function"]["parameters"])])
        )
    assert caught.value.code == "invalid_function_parameters"
    assert caught.value.param == "tools[0].function.parameters"


# -- allowed_tools and custom tools ---------------------------------------------------------------


def allowed(mode: str, *names: str) -> dict[str, Any]:
    return {
        "type": "allowed_tools",
        "allowed_tools": {
            "mode": mode,
            "tools": [{"type": "function", "function": {"name": n}} for n in names],
        },
    }


def test_allowed_tools_required_calls_one_of_the_allowed_tools(
    tool_client: openai.OpenAI,
) -> None:
    completion = tool_client.chat.completions.create(
        **ask("Paris", tools=[WEATHER, TIME], tool_choice=allowed("required", "get_time"))
    )
    assert completion.choices[0].finish_reason == "tool_calls"
    (call,) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "get_time"


def test_allowed_tools_auto_may_answer_in_words_and_calls_only_allowed_tools(
    tool_client: openai.OpenAI,
) -> None:
    words = tool_client.chat.completions.create(
        **ask("hello", tools=[WEATHER, TIME], tool_choice=allowed("auto", "get_time"))
    )
    assert words.choices[0].message.content == "You said: hello"
    called = tool_client.chat.completions.create(
        **ask("call get_weather", tools=[WEATHER, TIME], tool_choice=allowed("auto", "get_time"))
    )
    assert [c.function.name for c in called.choices[0].message.tool_calls or []] == ["get_time"]


@pytest.mark.parametrize(
    ("extra", "code", "param", "message"),
    [
        (
            {"tools": [WEATHER, TIME], "tool_choice": allowed("required", "get_time", "nope")},
            "invalid_value",
            "tool_choice",
            "Invalid value for 'tool_choice': no function named 'nope' was specified in the 'tools' parameter.",
        ),
        (
            {"tools": [WEATHER], "tool_choice": allowed("none", "get_weather")},
            "invalid_value",
            "tool_choice.allowed_tools.mode",
            None,
        ),
        (
            {"tools": [WEATHER], "tool_choice": allowed("auto")},
            "empty_array",
            "tool_choice.allowed_tools.tools",
            None,
        ),
        (
            {"tool_choice": allowed("auto", "get_weather")},
            "invalid_value",
            "tool_choice",
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
        ),
        (
            {"tools": [{"type": "custom", "custom": {"name": "grep"}}]},
            "invalid_value",
            "tools[0].type",
            "Invalid value: 'custom'. Custom tools are not supported by this server; supported values are: 'function'.",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "custom", "custom": {"name": "grep"}}},
            "invalid_value",
            "tool_choice.type",
            "Invalid value: 'custom'. Custom tools are not supported by this server; supported values are: 'function', 'allowed_tools'.",
        ),
        (
            {
                "tools": [WEATHER],
                "tool_choice": {
                    "type": "allowed_tools",
                    "allowed_tools": {
                        "mode": "auto",
                        "tools": [{"type": "custom", "custom": {"name": "grep"}}],
                    },
                },
            },
            "invalid_value",
            "tool_choice.allowed_tools.tools[0].type",
            "Invalid value: 'custom'. Custom tools are not supported by this server; supported values are: 'function'.",
        ),
    ],
)
def test_invalid_allowed_tools_and_custom_tools_are_400s(
    tool_server: LiveServer, extra: dict[str, Any], code: str, param: str, message: str | None
) -> None:
    assert_refused(tool_server, extra, code, param, message)


# -- tool messages answer the calls just before them (OpenAI's pairing) -------------------


def _call(call_id: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }


def _asked(*call_ids: str) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": [_call(c) for c in call_ids]}


def _answer(call_id: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": "sunny"}


USER = {"role": "user", "content": "Weather in Paris?"}


@pytest.mark.parametrize(
    ("messages", "param", "words"),
    [
        ([_answer("call_a")], "messages.[0].role", "must be a response to a preceeding"),
        ([USER, _answer("call_a")], "messages.[1].role", "must be a response to a preceeding"),
        (
            [USER, _asked("call_a"), _answer("call_b")],
            "messages.[2].tool_call_id",
            "'tool_call_id' of 'call_b' not found",
        ),
        (
            [USER, _asked("call_a", "call_b"), _answer("call_b"), USER],
            "messages.[1].role",
            "did not have response messages: call_a",
        ),
        ([USER, _asked("call_a")], "messages.[1].role", "did not have response messages: call_a"),
        (
            [USER, _asked("call_a"), _answer("call_a"), USER, _answer("call_a")],
            "messages.[4].role",
            "must be a response to a preceeding",
        ),
        (
            [USER, {"role": "assistant", "content": "Sunny.", "tool_calls": []}, USER],
            "messages[1].tool_calls",
            "Invalid 'messages[1].tool_calls': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
        ),
    ],
)
def test_tool_messages_that_answer_no_call_or_calls_left_unanswered_are_400s(
    tool_client: openai.OpenAI, messages: list[dict[str, Any]], param: str, words: str
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        tool_client.chat.completions.create(
            model=MODEL, messages=messages, tools=[WEATHER], max_tokens=5
        )
    error = refused.value.body
    assert isinstance(error, dict)
    assert (error["param"], error["type"]) == (param, "invalid_request_error")
    assert words in error["message"]


def test_calls_answered_in_any_order_are_accepted(tool_client: openai.OpenAI) -> None:
    messages = [USER, _asked("call_a", "call_b"), _answer("call_b"), _answer("call_a")]
    completion = tool_client.chat.completions.create(
        model=MODEL,
        messages=messages,
        tools=[WEATHER],
        max_tokens=5,  # type: ignore[arg-type]
    )
    assert completion.choices[0].finish_reason in ("stop", "length")
