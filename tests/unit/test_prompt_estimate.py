"""The prompt estimate that rate limits charge at admission, before any decoding."""

from __future__ import annotations

import base64

from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.serving.usage import estimate_prompt_tokens


def request(**fields: object) -> CreateChatCompletionRequest:
    return CreateChatCompletionRequest.model_validate({"model": "m", **fields})


def audio_part(n_bytes: int, fmt: str) -> dict[str, object]:
    data = base64.b64encode(bytes(n_bytes)).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}


def test_text_is_four_characters_a_token_and_four_a_message() -> None:
    one = request(messages=[{"role": "user", "content": "hello there"}])
    assert estimate_prompt_tokens(one) == 3 + 4
    two = request(
        messages=[
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 40}]},
        ]
    )
    assert estimate_prompt_tokens(two) == 20 + 8


def test_audio_is_estimated_from_its_size_by_format() -> None:
    wav = request(messages=[{"role": "user", "content": [audio_part(96_000, "wav")]}])
    assert estimate_prompt_tokens(wav) == 4 + 30  # 3 s of 16 kHz 16-bit: 10 tokens/s
    mp3 = request(messages=[{"role": "user", "content": [audio_part(12_000, "mp3")]}])
    assert estimate_prompt_tokens(mp3) == 4 + 30  # 3 s at 32 kbit/s


def test_tool_calls_and_tool_definitions_count() -> None:
    bare = [{"role": "user", "content": "hi"}]
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    call = {
        "role": "assistant",
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "lookup", "arguments": "{}" * 20}}
        ],
    }
    base = estimate_prompt_tokens(request(messages=bare))
    assert estimate_prompt_tokens(request(messages=bare, tools=tools)) > base
    assert estimate_prompt_tokens(request(messages=[*bare, call])) >= base + 4 + 11
