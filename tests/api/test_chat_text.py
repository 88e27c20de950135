"""Text answers through the official SDK: the §2 shape, usage, headers, n."""

from __future__ import annotations

import re

import httpx
import openai

MODEL = "gpt-4o-audio-preview"


def test_text_answer_has_openai_shape_and_snapshot_name(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hello there"}]
    )
    assert re.fullmatch(r"chatcmpl-[A-Za-z0-9]{29}", completion.id)
    assert completion.model == "gpt-4o-audio-preview-2025-06-03"  # the snapshot of the name asked
    assert re.fullmatch(r"fp_[0-9a-f]{10}", completion.system_fingerprint or "")
    assert completion.service_tier == "default"
    choice = completion.choices[0]
    assert choice.message.content == "You said: hello there"
    assert choice.message.audio is None
    assert choice.finish_reason == "stop"


def test_text_answer_has_no_audio_key(fake_server) -> None:
    body = httpx.post(
        fake_server.base_url + "/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    message = body["choices"][0]["message"]
    assert "audio" not in message
    assert message["content"] == "You said: hi" and message["refusal"] is None
    assert body["choices"][0]["logprobs"] is None


def test_usage_adds_up(client: openai.OpenAI) -> None:
    usage = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "one two three"}]
    ).usage
    assert usage is not None
    details_in, details_out = usage.prompt_tokens_details, usage.completion_tokens_details
    assert details_in is not None and details_out is not None
    assert usage.prompt_tokens == details_in.text_tokens + details_in.audio_tokens
    assert usage.completion_tokens == details_out.text_tokens + details_out.audio_tokens
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert details_out.text_tokens == 5  # "You said: one two three"
    assert details_out.audio_tokens == 0


def test_every_response_carries_request_id_and_processing_ms(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert re.fullmatch(r"req_[0-9a-f]{32}", raw.headers["x-request-id"])
    assert raw.headers["openai-processing-ms"].isdigit()
    assert raw.request_id == raw.headers["x-request-id"]


def test_n_choices_for_text(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, n=3, messages=[{"role": "user", "content": "hi"}]
    )
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert all(c.message.content == "You said: hi" for c in completion.choices)
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3 * 3


def test_streamed_n_choices_each_finish_once(client: openai.OpenAI) -> None:
    finishes: dict[int, int] = {}
    texts: dict[int, str] = {}
    for chunk in client.chat.completions.create(
        model=MODEL, n=2, stream=True, messages=[{"role": "user", "content": "a b"}]
    ):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finishes[choice.index] = finishes.get(choice.index, 0) + 1
    assert finishes == {0: 1, 1: 1}
    assert texts == {0: "You said: a b", 1: "You said: a b"}


def test_max_completion_tokens_ends_with_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, max_completion_tokens=2, messages=[{"role": "user", "content": "a b c d"}]
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.choices[0].message.content == "You said:"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_stop_sequence_is_not_in_output(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, stop=["three"], messages=[{"role": "user", "content": "one two three four"}]
    )
    text = completion.choices[0].message.content or ""
    assert "three" not in text and text.startswith("You said: one two")


def test_logprobs_shape_in_text_mode(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL, logprobs=True, top_logprobs=2, messages=[{"role": "user", "content": "hi"}]
    )
    logprobs = completion.choices[0].logprobs
    assert logprobs is not None and logprobs.content is not None
    assert "".join(t.token for t in logprobs.content) == completion.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 for t in logprobs.content)
    assert logprobs.content[0].bytes == list(logprobs.content[0].token.encode())


def test_every_message_role_is_accepted(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "developer", "content": [{"type": "text", "text": "be kind"}]},
            {"role": "user", "content": "first", "name": "ann"},
            {"role": "assistant", "content": "ok"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
            {"role": "function", "name": "f", "content": "42"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert completion.choices[0].message.content == "You said: second"
