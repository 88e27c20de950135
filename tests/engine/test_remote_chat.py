"""The cascade with its chat model on another server: llama-cpp-python's OpenAI server.

The upstream is a real chat server on loopback serving the embedded SmolLM2 GGUF; a spying
proxy in front of it records what reaches it and can hold its answer open. The front is an
ordinary omnivox (the real recogniser and voice) with ``--llm URL``, driven by the SDK.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from devtools.llama_server import llama_server
from devtools.serve import free_port
from devtools.spy_proxy import SpyProxy
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.settings import Settings
from tests.conftest import sdk_client
from tests.support.live_server import LiveServer, start_server

pytestmark = pytest.mark.engine

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 40}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
PLACE = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 30},
        "country": {"type": "string", "maxLength": 30},
    },
    "required": ["city", "country"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_server(tmp_path_factory.mktemp("llama") / "server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def spies(upstream: str) -> Iterator[list[SpyProxy]]:
    proxies = [SpyProxy(upstream), SpyProxy(upstream)]
    yield proxies
    for proxy in proxies:
        proxy.stop()


@pytest.fixture(scope="module")
def front(
    spies: list[SpyProxy], models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = Settings(
        llm=",".join(spy.base_url for spy in spies), cache_dir=models_dir, threads=2
    )
    server = start_server(CascadeEngine(settings), tmp_path_factory.mktemp("front"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(front: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(front.base_url) as client:
        yield client


def ask(client: openai.OpenAI, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model="gpt-4o-audio-preview", messages=[{"role": "user", "content": text}], **kwargs
    )


def last_body(spies: list[SpyProxy]) -> dict[str, Any]:
    return max((spy for spy in spies if spy.bodies), key=lambda s: len(s.bodies)).bodies[-1]


def test_the_upstream_answers_with_its_own_usage(client: openai.OpenAI) -> None:
    answer = ask(client, "What is the capital of France?", temperature=0, max_tokens=30)
    assert answer.choices[0].message.content
    usage = answer.usage
    assert usage is not None and usage.prompt_tokens > 10 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_sampling_parameters_reach_the_upstream(
    client: openai.OpenAI, spies: list[SpyProxy]
) -> None:
    answer = ask(
        client,
        "Count from one to twenty.",
        stop=["7"],
        seed=42,
        temperature=0.3,
        top_p=0.9,
        logit_bias={"1234": -100},
        presence_penalty=0.5,
        max_completion_tokens=60,
    )
    body = last_body(spies)
    assert body["stop"] == ["7"] and body["seed"] == 42
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9
    assert body["logit_bias"] == {"1234": -100.0} and body["presence_penalty"] == 0.5
    assert body["max_tokens"] == 60 and body["stream"] is True
    assert "7" not in (answer.choices[0].message.content or "")


def test_a_spoken_answer_starts_before_the_upstream_has_finished(
    client: openai.OpenAI, spies: list[SpyProxy]
) -> None:
    sentences = "The sea is wide. It is deep and blue. Ships sail on it every day."
    for spy in spies:
        spy.release.clear()
        spy.hold = True
        spy.script = [word + " " for word in sentences.split()]
    try:
        stream = ask(
            client,
            "Tell me about the sea in two sentences.",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"},
            stream=True,
            max_tokens=60,
        )
        finished_before = sum(spy.finished for spy in spies)
        audio = b""
        for chunk in stream:
            delta = chunk.choices[0].delta if chunk.choices else None
            data = getattr(getattr(delta, "audio", None), "data", None) if delta else None
            if data:
                audio += base64.b64decode(data)
                break
        # Sound has arrived while every upstream answer is still held open.
        assert audio and sum(spy.finished for spy in spies) == finished_before
        for spy in spies:
            spy.release.set()
        for _chunk in stream:
            pass
    finally:
        for spy in spies:
            spy.hold = False
            spy.script = None
            spy.release.set()


def test_an_upstream_breaking_off_mid_answer_ends_the_stream_with_an_error_event(
    client: openai.OpenAI, spies: list[SpyProxy]
) -> None:
    for spy in spies:
        spy.script, spy.cut = ["The sea ", "is wide ", "and deep"], True
    try:
        with pytest.raises(openai.APIError) as caught:
            for _chunk in ask(client, "Tell me about the sea.", stream=True):
                pass
        assert "upstream" in caught.value.message
    finally:
        for spy in spies:
            spy.script, spy.cut = None, False
    assert ask(client, "Say yes.", max_completion_tokens=5).choices  # serving on


def test_required_tool_calls_validate_against_their_schema(client: openai.OpenAI) -> None:
    answer = ask(
        client,
        "What's the weather like in Paris?",
        tools=TOOLS,
        tool_choice="required",
        max_completion_tokens=80,
    )
    calls = answer.choices[0].message.tool_calls
    assert answer.choices[0].finish_reason == "tool_calls" and calls
    for call in calls:
        assert call.function.name == "get_weather"
        jsonschema.validate(json.loads(call.function.arguments), WEATHER)


def test_auto_may_answer_in_words_or_call(client: openai.OpenAI) -> None:
    answer = ask(client, "What's the weather like in Rome?", tools=TOOLS, max_completion_tokens=80)
    message = answer.choices[0].message
    if message.tool_calls:
        jsonschema.validate(json.loads(message.tool_calls[0].function.arguments), WEATHER)
    else:
        assert message.content and not message.content.startswith("<tool_call>")


def test_a_json_schema_answer_validates(client: openai.OpenAI, spies: list[SpyProxy]) -> None:
    answer = ask(
        client,
        "Name a city and its country.",
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "place", "strict": True, "schema": PLACE},
        },
        max_completion_tokens=80,
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content or ""), PLACE)
    assert "grammar" in last_body(spies)  # constrained by the upstream's own decoding


def test_logprobs_come_from_the_upstream(client: openai.OpenAI) -> None:
    answer = ask(client, "Say hello.", logprobs=True, top_logprobs=2, max_completion_tokens=8)
    content = answer.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(entry.logprob <= 0 for entry in content)
    assert all(len(entry.top_logprobs) == 2 for entry in content)


def test_one_upstream_dying_leaves_the_answers_coming(
    client: openai.OpenAI, spies: list[SpyProxy]
) -> None:
    spies[0].stop()
    for _ in range(4):
        answer = ask(client, "Say yes.", max_completion_tokens=5)
        assert answer.choices[0].finish_reason in ("stop", "length")


def test_no_model_is_loaded_for_a_remote_chat_model(front: LiveServer) -> None:
    engine = front.engine
    assert type(engine.generator).__name__ == "RemoteChatModel"
    assert engine.context_window_tokens == 4096


def test_a_front_whose_upstream_is_down_answers_503(tmp_path: Path, models_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    settings = Settings(llm=dead, llm_model="smollm2", cache_dir=models_dir, threads=2)
    server = start_server(CascadeEngine(settings), tmp_path)
    try:
        with sdk_client(server.base_url) as client, pytest.raises(openai.APIStatusError) as caught:
            ask(client, "hello")
        assert caught.value.status_code == 503
        assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]
        assert "127.0.0.1" not in caught.value.message  # where upstreams lie stays in the log
        health = httpx.get(server.root + "/health")
        assert health.status_code == 200 and health.json()["unavailable"] == ["chat model"]
    finally:
        server.stop()
