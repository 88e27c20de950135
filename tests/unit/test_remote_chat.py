"""A chat model on another server: each dialect's request, what a dialect refuses, its grammars."""

from __future__ import annotations

from typing import Any

import pytest

from omnivox.engines.base import ResponseFormat, SamplingParams
from omnivox.engines.cascade.chat.model import ChatPrompt, Grammar, GrammarBranch
from omnivox.engines.cascade.chat.remote import (
    RemoteChatModel,
    detect_dialect,
    reported_context,
)
from omnivox.engines.cascade.grammar.union import either, prefixed
from omnivox.errors import InvalidRequestError

PROMPT = ChatPrompt(({"role": "user", "content": "hi"},), "[]", (), 6)
CALLS = Grammar('root ::= "<tool_call>" call\ncall ::= "x"\n', stoppable=False)
JSON = Grammar('root ::= "{" "}"\n')


def model(dialect: Any) -> RemoteChatModel:
    return RemoteChatModel(pool=None, model="m", dialect=dialect)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dialect", "where"),
    [
        ("llamacpp", ("grammar",)),
        ("vllm", ("structured_outputs", "grammar")),
        ("sglang", ("ebnf",)),
    ],
)
def test_grammars_go_where_each_dialect_takes_them(dialect: str, where: tuple[str, ...]) -> None:
    body: Any = model(dialect).body(PROMPT, SamplingParams(), JSON, None)
    for key in where:
        body = body[key]
    assert body == JSON.text


@pytest.mark.parametrize("dialect", ["openai", "ollama"])
def test_without_grammars_a_schema_goes_as_openai_response_format(dialect: str) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    fmt = ResponseFormat("json_schema", schema, strict=True)
    body = model(dialect).body(PROMPT, SamplingParams(), JSON, None, fmt)
    assert "grammar" not in body and "ebnf" not in body
    assert body["response_format"]["json_schema"]["schema"] == schema


def test_every_sampling_parameter_is_sent_as_openai_names_it() -> None:
    sampling = SamplingParams(
        temperature=0.2,
        top_p=0.5,
        max_output_tokens=7,
        stop=("x",),
        seed=3,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        logit_bias={12: -100.0},
        logprobs=True,
        top_logprobs=2,
    )
    body = model("vllm").body(PROMPT, sampling, None, None)
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.5, 7)
    assert body["stop"] == ["x"] and body["seed"] == 3
    assert (body["presence_penalty"], body["frequency_penalty"]) == (0.1, 0.2)
    assert body["logit_bias"] == {"12": -100.0}
    assert body["logprobs"] is True and body["top_logprobs"] == 2


def test_a_call_block_is_never_cut_by_stop_sequences() -> None:
    body = model("llamacpp").body(PROMPT, SamplingParams(stop=("x",)), CALLS, None)
    assert "stop" not in body


def test_auto_becomes_one_grammar_of_a_call_or_an_answer() -> None:
    branch = GrammarBranch("<tool_call>", CALLS, 5.0)
    body = model("llamacpp").body(PROMPT, SamplingParams(), None, branch)
    assert body["grammar"].startswith("root ::= c-root | free")
    assert "c-call ::=" in body["grammar"]
    never = GrammarBranch("<tool_call>", CALLS, float("-inf"), otherwise=JSON)
    assert model("llamacpp").body(PROMPT, SamplingParams(), None, never)["grammar"] == JSON.text


def test_what_a_dialect_lacks_is_a_400_naming_it() -> None:
    with pytest.raises(InvalidRequestError, match="logit_bias") as caught:
        model("ollama").check_request(SamplingParams(logit_bias={1: 1.0}), tools=False)
    assert caught.value.param == "logit_bias"
    with pytest.raises(InvalidRequestError, match="tools") as caught:
        model("openai").check_request(SamplingParams(), tools=True)
    assert caught.value.param == "tools"
    model("vllm").check_request(SamplingParams(logit_bias={1: 1.0}), tools=True)


@pytest.mark.parametrize(
    ("owner", "dialect"),
    [
        ("vllm", "vllm"),
        ("sglang", "sglang"),
        ("llamacpp", "llamacpp"),
        ("me", "llamacpp"),
        ("library", "ollama"),
        ("openai", "openai"),
        ("someone", "openai"),
    ],
)
def test_the_dialect_is_told_by_the_models_owner(owner: str, dialect: str) -> None:
    assert detect_dialect([{"id": "m", "owned_by": owner}]) == dialect


def test_the_context_window_is_read_from_the_models_entry() -> None:
    assert reported_context([{"id": "m", "max_model_len": 32768}], "m") == 32768
    assert reported_context([{"id": "other", "max_model_len": 8}], "m") is None


def test_prefixing_renames_rules_and_leaves_literals() -> None:
    gbnf = 'root ::= "root" [a-z]* item # root\nitem ::= "\\"item\\"" | [\\]x]\n'
    renamed = prefixed(gbnf, "p-")
    assert renamed.splitlines()[0] == 'p-root ::= "root" [a-z]* p-item # root'
    assert renamed.splitlines()[1] == 'p-item ::= "\\"item\\"" | [\\]x]'


def test_the_free_answer_may_not_begin_like_a_call() -> None:
    grammar = either(CALLS.text, "<tool_call>", None)
    assert "free ::= ([^<]" in grammar
    with_json = either(CALLS.text, "<tool_call>", JSON.text)
    assert "root ::= c-root | a-root" in with_json and "a-root ::=" in with_json
