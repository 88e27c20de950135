"""Tool calls and structured output with the real embedded chat model, driven through the
real server by the official SDK: forced calls whose arguments validate against the
function's schema (streamed and not), the choice "auto" makes, a spoken round trip
(question, call, result, spoken answer), and JSON answers that validate."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from omnivox.engines.base import GenerationRequest, SamplingParams, ToolSpec, Turn
from omnivox.engines.cascade.chat.tools import AnswerReader
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.engines.events import TextDelta, ToolCallDelta
from tests.conftest import sdk_client
from tests.engine.conftest import lend
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.engine

MODEL = "gpt-4o-audio-preview"
WEATHER_PARAMETERS = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ALARM_PARAMETERS = {
    "type": "object",
    "properties": {"hour": {"type": "integer"}, "label": {"type": "string"}},
    "required": ["hour"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": WEATHER_PARAMETERS,
            "strict": True,
        },
    },
    {
        "type": "function",
        "function": {
            "name": "set_alarm",
            "description": "Set an alarm clock",
            "parameters": ALARM_PARAMETERS,
        },
    },
]
SCHEMAS = {"get_weather": WEATHER_PARAMETERS, "set_alarm": ALARM_PARAMETERS}
QUESTION = "What's the weather like in Paris today?"
GREEDY: dict[str, Any] = {"temperature": 0, "max_completion_tokens": 80}


@pytest.fixture(scope="module")
def server(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("tools"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> openai.OpenAI:
    return sdk_client(server.base_url)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def assert_valid_call(name: str, arguments: str) -> dict[str, Any]:
    parsed = json.loads(arguments)
    jsonschema.validate(parsed, SCHEMAS[name])
    return parsed


def test_required_calls_a_tool_with_valid_arguments(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user(QUESTION),
        tools=TOOLS,
        tool_choice="required",
        stop=[",", "Paris"],  # never cut a call: its arguments must parse
        **GREEDY,
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    calls = choice.message.tool_calls or []
    assert calls and all(c.id.startswith("call_") and len(c.id) == 29 for c in calls)
    for call in calls:
        assert_valid_call(call.function.name, call.function.arguments)
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments)["city"] == "Paris"


@pytest.mark.parametrize("name", ["get_weather", "set_alarm"])
def test_a_named_function_is_called_streamed_with_valid_arguments(
    client: openai.OpenAI, name: str
) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=user("Wake me up at seven." if name == "set_alarm" else QUESTION),
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": name}},
        stream=True,
        **GREEDY,
    )
    fragments = [
        fragment
        for chunk in stream
        for fragment in (chunk.choices[0].delta.tool_calls or [] if chunk.choices else [])
    ]
    first = fragments[0]
    assert first.id is not None and first.function is not None and first.function.name == name
    assert first.function.arguments == ""
    assert all(f.index == 0 and f.id is None for f in fragments[1:])
    arguments = "".join(f.function.arguments or "" for f in fragments[1:] if f.function)
    assert_valid_call(name, arguments)


@pytest.mark.asyncio(loop_scope="session")
async def test_auto_calls_for_a_weather_question_and_answers_others(
    cascade: CascadeEngine,
) -> None:
    specs = tuple(
        ToolSpec(t["function"]["name"], t["function"]["description"], t["function"]["parameters"])
        for t in TOOLS
    )

    async def answer(question: str) -> tuple[str, list[ToolCallDelta]]:
        request = GenerationRequest(
            (Turn("user", (question,)),),
            SamplingParams(temperature=0, max_output_tokens=60),
            tools=specs,
            tool_choice="auto",
        )
        events = [e async for e in cascade.generate(await cascade.prepare(request))]
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        return text, [e for e in events if isinstance(e, ToolCallDelta)]

    text, calls = await answer(QUESTION)
    assert text == "" and [c.name for c in calls if c.name] == ["get_weather"]
    text, calls = await answer("Who wrote Hamlet?")
    assert "Shakespeare" in text and calls == []


def spoken_wav(text: str) -> bytes:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    args = ["espeak-ng", "-v", "en-us", "-s", "140", "--stdout", text]
    return subprocess.run(args, capture_output=True, check=True).stdout


def test_a_spoken_question_a_call_and_its_result_end_in_a_spoken_answer(
    client: openai.OpenAI,
) -> None:
    question = {
        "role": "user",
        "content": [
            {
                "type": "input_audio",
                "input_audio": {
                    "data": base64.b64encode(spoken_wav(QUESTION)).decode(),
                    "format": "wav",
                },
            }
        ],
    }
    voice: dict[str, Any] = {
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
    }
    with client.chat.completions.stream(
        model=MODEL, messages=[question], tools=TOOLS[:1], tool_choice="required", **voice, **GREEDY
    ) as stream:
        list(stream)
        turn = stream.get_final_completion()
    message = turn.choices[0].message
    assert turn.choices[0].finish_reason == "tool_calls"
    assert message.audio is None  # a turn that only calls is not spoken
    call = (message.tool_calls or [])[0]
    assert call.function.parsed_arguments is not None
    jsonschema.validate(call.function.parsed_arguments, WEATHER_PARAMETERS)
    result = json.dumps({"temperature_c": 24, "conditions": "sunny"})
    with client.chat.completions.stream(
        model=MODEL,
        messages=[
            question,
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": call.function.arguments,
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call.id, "content": result},
        ],
        tools=TOOLS[:1],
        **voice,
        **GREEDY,
    ) as stream:
        list(stream)
        answer = stream.get_final_completion()
    audio = answer.choices[0].message.audio
    assert answer.choices[0].finish_reason == "stop"
    assert audio is not None and audio.transcript.strip()
    assert "sunny" in audio.transcript.lower()
    assert len(base64.b64decode(audio.data)) > 24_000  # more than half a second of speech


class Person(pydantic.BaseModel):
    name: str
    age: int
    hobbies: list[str]


def test_json_schema_answers_validate(client: openai.OpenAI) -> None:
    completion = client.chat.completions.parse(
        model=MODEL,
        messages=user("Describe a fictional person in JSON: name, age and hobbies."),
        response_format=Person,
        **GREEDY,
    )
    person = completion.choices[0].message.parsed
    assert isinstance(person, Person) and person.name
    schema = Person.model_json_schema()
    jsonschema.validate(json.loads(completion.choices[0].message.content or ""), schema)


REMINDER_PARAMETERS = {
    "type": "object",
    "properties": {
        "hour": {"type": "integer", "minimum": 1, "maximum": 12},
        "email": {"type": "string", "format": "email"},
    },
    "required": ["hour", "email"],
    "additionalProperties": False,
}


def assert_valid_with_formats(value: Any, schema: dict[str, Any]) -> None:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    jsonschema.Draft202012Validator(schema, format_checker=checker).validate(value)


def test_a_call_keeps_integers_in_bounds_and_emails_well_formed(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("Remind me at 17 o'clock by mail, my address is ada at example dot org."),
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "remind",
                    "description": "Send a reminder at an hour of the clock",
                    "parameters": REMINDER_PARAMETERS,
                    "strict": True,
                },
            }
        ],
        tool_choice="required",
        **GREEDY,
    )
    (call, *_) = completion.choices[0].message.tool_calls or []
    assert call.function.name == "remind"
    assert_valid_with_formats(json.loads(call.function.arguments), REMINDER_PARAMETERS)


def test_json_schema_answers_keep_numbers_in_bounds(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {
            "temperature_c": {"type": "number", "minimum": -50, "maximum": 60},
            "humidity_percent": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["temperature_c", "humidity_percent"],
        "additionalProperties": False,
    }
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("The oven is at 451 degrees and 250 percent humid. Report it as JSON."),
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "reading", "schema": schema, "strict": True},
        },
        **GREEDY,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert_valid_with_formats(json.loads(completion.choices[0].message.content or ""), schema)


def test_json_object_answers_parse(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("List three colors as a JSON object."),
        response_format={"type": "json_object"},
        **GREEDY,
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


@pytest.mark.parametrize(
    ("extra", "param", "code"),
    [
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {"x": {"type": "thing"}},
                            },
                        },
                    }
                ]
            },
            "tools[0].function.parameters",
            "invalid_function_parameters",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "r", "schema": {"type": "thing"}},
                }
            },
            "response_format",
            "invalid_json_schema",
        ),
        (
            {
                "tools": [
                    {
                        "type": "function",
                        "function": {
                            "name": "f",
                            "parameters": {
                                "type": "object",
                                "properties": {
                                    "x": {"type": "integer", "minimum": 5, "maximum": 3}
                                },
                            },
                        },
                    }
                ]
            },
            "tools[0].function.parameters",
            "invalid_function_parameters",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "r",
                        "schema": {
                            "type": "object",
                            "properties": {"x": {"type": "number", "multipleOf": 0.5}},
                        },
                    },
                }
            },
            "response_format",
            "invalid_json_schema",
        ),
        ({"logit_bias": {"49152": -100}}, "logit_bias", "invalid_value"),
    ],
)
def test_schemas_and_token_ids_the_model_can_not_use_are_400s(
    client: openai.OpenAI, extra: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("hi"), **extra)
    assert (caught.value.param, caught.value.code) == (param, code)


def test_the_reader_streams_calls_and_passes_other_answers_through() -> None:
    block = (
        '<tool_call>[\n{"name": "a", "arguments": {"x": "}\\"{", "y": [1, {"z": 2}]}},'
        '{"name":"b","arguments":{}}\n]</tool_call>'
    )
    reader = AnswerReader()
    events = [e for ch in block for e in reader.feed(ch)] + reader.flush()
    assert all(isinstance(e, ToolCallDelta) for e in events)
    starts = [(e.index, e.name, e.arguments) for e in events if e.name]
    assert starts == [(0, "a", ""), (1, "b", "")]
    arguments = ["".join(e.arguments for e in events if e.index == i) for i in (0, 1)]
    assert json.loads(arguments[0]) == {"x": '}"{', "y": [1, {"z": 2}]}
    assert arguments[1] == "{}"
    text = AnswerReader()
    assert text.feed("<t") == []  # could still be a call
    assert [e.text for e in text.feed("able>")] == ["<table>"]
    assert [e.text for e in text.feed(" ok")] == [" ok"]
