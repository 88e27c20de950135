"""Schemas llama.cpp's grammar engine could not hold, sent through the official SDK to a
real ``omnivox serve``: one of 230 bytes (a string of at most 30,000 characters) crashed
the whole server inside llama.cpp's grammar parser, others swelled it by gigabytes or
hung a thread. Each is now served or refused with OpenAI's 400, and the server answers
afterwards. The server is a subprocess, so that a crash fails these tests, not the run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import sdk_client
from tests.support.subprocess_server import omnivox_serve

pytestmark = pytest.mark.engine

MODEL = "gpt-4o-audio-preview"
TOO_MUCH = "is more than omnivox's grammar supports"
LONG_STRING = {"type": "string", "maxLength": 30000}


def response_format(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def tool(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {"name": "note", "parameters": parameters}}]


def doubled(levels: int) -> dict[str, Any]:
    """Tiny, yet each level doubles the alternatives llama.cpp walks: 2**levels."""
    defs: dict[str, Any] = {"d0": {"enum": ["a", "b"]}}
    for i in range(1, levels + 1):
        defs[f"d{i}"] = {"anyOf": [{"$ref": f"#/$defs/d{i - 1}"}] * 2}
    return {"$defs": defs, "anyOf": [{"$ref": f"#/$defs/d{levels}"}]}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[openai.OpenAI]:
    with omnivox_serve([], tmp_path_factory.mktemp("grammar-limits")) as base_url:
        yield sdk_client(base_url)


def assert_server_answers(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=user("Say hello."), max_completion_tokens=4, temperature=0
    )
    assert completion.choices[0].message.content


def test_a_string_of_at_most_30000_characters_is_served(client: openai.OpenAI) -> None:
    assert len(json.dumps({"response_format": response_format(LONG_STRING)})) < 230
    completion = client.chat.completions.create(
        model=MODEL,
        messages=user("Name a colour."),
        response_format=response_format(LONG_STRING),
        max_completion_tokens=12,
        temperature=0,
    )
    choice = completion.choices[0]
    content = choice.message.content or ""
    assert content.startswith('"')
    if choice.finish_reason == "stop":
        assert isinstance(json.loads(content), str)
    assert_server_answers(client)


@pytest.mark.parametrize(
    ("extra", "param", "code", "message"),
    [
        (
            {"response_format": response_format({"type": "string", "maxLength": 1e9})},
            "response_format",
            "invalid_json_schema",
            f"maxLength 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        (
            {"response_format": response_format({"type": "string", "pattern": "^[a-z]{0,30000}$"})},
            "response_format",
            "invalid_json_schema",
            f"the repetition {{0,30000}} in 'pattern' {TOO_MUCH} (at most 250)",
        ),
        (
            {"response_format": response_format(doubled(24))},
            "response_format",
            "invalid_json_schema",
            f"{TOO_MUCH} (at most 2500)",
        ),
        (
            {
                "tools": tool(
                    {
                        "type": "object",
                        "properties": {"text": {"type": "string", "minLength": 10**9}},
                    }
                ),
                "tool_choice": "required",
            },
            "tools[0].function.parameters",
            "invalid_function_parameters",
            f"minLength 1000000000 {TOO_MUCH} (at most 250000)",
        ),
        (
            {
                "tools": tool(
                    {
                        "type": "object",
                        "properties": {"items": {"type": "array", "items": {}, "maxItems": 10**12}},
                    }
                ),
            },
            "tools[0].function.parameters",
            "invalid_function_parameters",
            f"maxItems 1000000000000 {TOO_MUCH} (at most 250000)",
        ),
    ],
)
def test_a_schema_the_grammar_can_not_hold_is_a_400_and_the_server_lives_on(
    client: openai.OpenAI, extra: dict[str, Any], param: str, code: str, message: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=user("Hi."), **extra)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert message in caught.value.message
    assert_server_answers(client)
