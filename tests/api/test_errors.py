"""Every error in OpenAI's shape (§4), with the right status and param; the server keeps serving."""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import openai
import pytest

from tests.support.media import audio_message, ffmpeg_encode, tone_s16le

MODEL = "gpt-4o-audio-preview"
HI = [{"role": "user", "content": "hi"}]


def post(server, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(server.base_url + "/chat/completions", json=body, timeout=30, **kwargs)


def assert_error(
    response: httpx.Response, status: int, code: str | None, param: str | None
) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param)
    return error


@pytest.mark.parametrize(
    ("extra", "code", "param", "message"),
    [
        (
            {"temperature": 2.5},
            "decimal_above_max_value",
            "temperature",
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 2.5 instead.",
        ),
        ({"temperature": -1}, "decimal_below_min_value", "temperature", None),
        ({"top_p": 1.5}, "decimal_above_max_value", "top_p", None),
        (
            {"n": 0},
            "integer_below_min_value",
            "n",
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
        ({"n": 129}, "integer_above_max_value", "n", None),
        ({"presence_penalty": 3}, "decimal_above_max_value", "presence_penalty", None),
        ({"frequency_penalty": -3}, "decimal_below_min_value", "frequency_penalty", None),
        ({"top_logprobs": 21, "logprobs": True}, "integer_above_max_value", "top_logprobs", None),
        ({"logit_bias": {"42": 101}}, "integer_above_max_value", "logit_bias.42", None),
        ({"max_completion_tokens": 0}, "integer_below_min_value", "max_completion_tokens", None),
        ({"stop": ["a", "b", "c", "d", "e"]}, "array_above_max_length", "stop", None),
        (
            {"temperature": "hot"},
            "invalid_type",
            "temperature",
            "Invalid type for 'temperature': expected a decimal, but got a string instead.",
        ),
        ({"stream": "yes"}, "invalid_type", "stream", None),
        ({"modalities": ["text", "video"]}, "invalid_value", "modalities[1]", None),
        (
            {"audio": {"voice": "alloy", "format": "ogg"}, "modalities": ["text", "audio"]},
            "invalid_value",
            "audio.format",
            None,
        ),
        ({"foo": 1}, "unknown_parameter", "foo", "Unknown parameter: 'foo'."),
        (
            {"response_format": {"type": "text", "properties": {}}},
            "unknown_parameter",
            "response_format.properties",
            "Unknown parameter: 'response_format.properties'.",
        ),
        ({"messages": []}, "empty_array", "messages", None),
        (
            {"messages": [{"role": "robot", "content": "x"}]},
            "invalid_value",
            "messages[0].role",
            None,
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]},
            "invalid_type",
            "messages[0].content[0].text",
            None,
        ),
        (
            {"messages": [{"role": "user"}]},
            "missing_required_parameter",
            "messages[0].content",
            "Missing required parameter: 'messages[0].content'.",
        ),
        (
            {"max_tokens": 20_000},
            "invalid_value",
            "max_tokens",
            "max_tokens is too large: 20000. This model supports at most 16384 completion tokens, whereas you provided 20000.",
        ),
        ({"top_logprobs": 2}, "invalid_value", "top_logprobs", None),
        ({"stream_options": {"include_usage": True}}, "invalid_value", "stream_options", None),
        ({"reasoning_effort": "high"}, "unsupported_parameter", "reasoning_effort", None),
        (
            {"prediction": {"type": "content", "content": "x"}},
            "unsupported_parameter",
            "prediction",
            None,
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "bad name!"}}]},
            "invalid_value",
            "tools[0].function.name",
            None,
        ),
    ],
)
def test_invalid_request_fields(
    fake_server, extra: dict[str, Any], code: str, param: str, message: str | None
) -> None:
    body = {"model": MODEL, "messages": HI, **extra}
    error = assert_error(post(fake_server, body), 400, code, param)
    assert error["type"] == "invalid_request_error"
    if message is not None:
        assert error["message"] == message


def test_missing_model_and_messages(fake_server) -> None:
    assert_error(post(fake_server, {"messages": HI}), 400, "missing_required_parameter", "model")
    assert_error(post(fake_server, {"model": MODEL}), 400, "missing_required_parameter", "messages")


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b"\xff\xfe"])
def test_invalid_json_body(fake_server, body: bytes) -> None:
    response = httpx.post(
        fake_server.base_url + "/chat/completions",
        content=body,
        headers={"content-type": "application/json"},
    )
    error = assert_error(response, 400, None, None)
    assert error["message"].startswith("We could not parse the JSON body of your request.")


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        client.chat.completions.create(model="gpt-5-omni", messages=HI)
    assert err.value.code == "model_not_found"
    assert (
        err.value.body["message"]
        == "The model `gpt-5-omni` does not exist or you do not have access to it."
    )


def test_unknown_route_is_unknown_url(fake_server) -> None:
    response = httpx.post(fake_server.base_url + "/chat/completion", json={})
    error = assert_error(response, 404, "unknown_url", None)
    assert error["message"].startswith("Unknown request URL: POST /v1/chat/completion.")
    assert_error(httpx.get(fake_server.base_url + "/chat/completions"), 404, "unknown_url", None)


def test_a_trailing_slash_is_served_as_the_route(fake_server) -> None:
    response = httpx.post(fake_server.base_url + "/chat/completions/", json={})
    error = assert_error(response, 400, "missing_required_parameter", "model")
    assert response.headers["x-request-id"].startswith("req_")
    assert error["message"]
    answered = httpx.post(
        fake_server.base_url + "/chat/completions/?x=1",
        json={"model": MODEL, "messages": HI, "max_tokens": 3},
    )
    assert answered.status_code == 200 and answered.json()["object"] == "chat.completion"
    assert httpx.get(fake_server.base_url + "/models/").json()["object"] == "list"
    for odd in ("/models//", "/models/%2F"):  # one slash only: no model is named "" or "/"
        assert httpx.get(fake_server.base_url + odd).status_code == 404


def test_unknown_voice(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            modalities=["text", "audio"],
            audio={"voice": "robot", "format": "wav"},
            messages=HI,
        )
    assert (err.value.code, err.value.param) == ("invalid_value", "audio.voice")
    assert "'alloy'" in err.value.message and "'cedar'" in err.value.message


def test_audio_output_needs_the_audio_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, modalities=["text", "audio"], messages=HI)
    assert err.value.param == "audio"


def test_n_above_one_with_audio_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            n=2,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=HI,
        )
    assert (err.value.code, err.value.param) == ("unsupported_value", "n")


def test_logprobs_with_audio_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            logprobs=True,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "wav"},
            messages=HI,
        )
    assert (err.value.code, err.value.param) == ("unsupported_value", "logprobs")


def test_image_parts_are_refused_like_openai(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is this"},
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                    ],
                }
            ],
        )
    assert (
        err.value.body["message"]
        == "Invalid content type. image_url is only supported by certain models."
    )
    assert err.value.param == "messages.[0].content.[1].type"


def test_non_base64_audio(fake_server, client: openai.OpenAI) -> None:
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": "not base64!!", "format": "wav"},
                    }
                ],
            }
        ],
    }
    assert_error(
        post(fake_server, body), 400, "invalid_value", "messages[0].content[0].input_audio.data"
    )
    assert client.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content


def audio_body(data_b64: str, fmt: str = "wav") -> dict[str, Any]:
    part = {"type": "input_audio", "input_audio": {"data": data_b64, "format": fmt}}
    return {"model": MODEL, "messages": [{"role": "user", "content": [part]}]}


@pytest.mark.parametrize("line_break", ["\n", "\r\n"])
def test_base64_in_mime_lines_is_accepted(fake_server, ffmpeg: str, line_break: str) -> None:
    # base64(1), email and PEM encoders wrap at 76 characters; OpenAI's decoder skips
    # the breaks, and so must ours.
    data = ffmpeg_encode(tone_s16le(1.5), "wav")
    wrapped = base64.encodebytes(data).decode().replace("\n", line_break)
    assert wrapped.count(line_break) > 100
    response = post(fake_server, audio_body(wrapped))
    assert response.status_code == 200, response.text
    content = response.json()["choices"][0]["message"]["content"]
    assert content == "You said: 1.5 seconds of audio"


@pytest.mark.parametrize(
    "data_b64",
    [
        "UklG\nRg==!!",  # whitespace is skipped, other characters are not
        "UklGRg\u00a0==",  # a no-break space is not ASCII whitespace
        "UklG-_==",  # the URL-safe alphabet
        "UklGR\ng=",  # bad padding, broken by a line
    ],
)
def test_base64_garbage_is_still_refused(fake_server, data_b64: str) -> None:
    assert_error(
        post(fake_server, audio_body(data_b64)),
        400,
        "invalid_value",
        "messages[0].content[0].input_audio.data",
    )


@pytest.mark.parametrize(
    "key",
    [
        "\u00b2",  # str.isdigit() is true for a superscript two, int() refuses it
        "\u0663",  # an Arabic-Indic three: int() takes it, no tokenizer would
        "--5",
        "-5",
        "+5",
        " 5",
        "5 ",
        "1_000",
        "0x10",
        "5.0",
        "",
        "99999999999999999999999",
        "9223372036854775808",  # 2**63: past what an engine's int64 tensor holds
        pytest.param("9" * 5_000, id="5000-digits"),  # more than int() converts
    ],
)
def test_logit_bias_keys_that_are_not_token_ids(
    fake_server, client: openai.OpenAI, key: str
) -> None:
    body = {"model": MODEL, "messages": HI, "logit_bias": {key: 5}}
    error = assert_error(post(fake_server, body), 400, "invalid_value", "logit_bias")
    assert error["message"].startswith("Invalid key in 'logit_bias': ")
    assert client.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content


def test_logit_bias_keys_that_are_token_ids(fake_server) -> None:
    bias = {"0": -100, "42": 5, "007": 1, "9223372036854775807": 1}
    body = {"model": MODEL, "messages": HI, "logit_bias": bias}
    assert post(fake_server, body).status_code == 200


@pytest.mark.parametrize(
    "data", [b"RIFF garbage that is not audio", bytes(range(256)) * 40, b"ID3" + b"\x00" * 500]
)
def test_undecodable_audio(fake_server, client: openai.OpenAI, data: bytes) -> None:
    body = {
        "model": MODEL,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"},
                    }
                ],
            }
        ],
    }
    error = assert_error(post(fake_server, body), 400, "unsupported_format", "messages")
    assert error["message"] == "This model does not support the format you provided."
    assert client.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content


def test_input_audio_longer_than_the_limit(make_server, ffmpeg: str) -> None:
    server = make_server(max_input_audio_s=1.5)
    data = ffmpeg_encode(tone_s16le(3.0), "wav")
    response = post(server, {"model": MODEL, "messages": [audio_message(data, "wav")]})
    assert_error(response, 400, "audio_too_long", "messages[0].content[0].input_audio.data")


def test_body_over_the_cap_is_refused_before_it_is_read(make_server) -> None:
    server = make_server(max_body_bytes=64 * 1024)
    big = {"model": MODEL, "messages": [{"role": "user", "content": "x" * 200_000}]}
    assert_error(post(server, big), 413, "request_too_large", None)

    def chunked():  # no content-length: the cap applies while reading
        yield b'{"model": "gpt-4o-audio-preview", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 10_000
        yield b'"}]}'

    response = httpx.post(
        server.base_url + "/chat/completions",
        content=chunked(),
        headers={"content-type": "application/json"},
    )
    assert_error(response, 413, "request_too_large", None)
    assert post(server, {"model": MODEL, "messages": HI}).status_code == 200


def test_context_length_exceeded(fake_server) -> None:
    long_text = " ".join(["word"] * 600)  # the fake engine's window is 512 tokens
    error = assert_error(
        post(fake_server, {"model": MODEL, "messages": [{"role": "user", "content": long_text}]}),
        400,
        "context_length_exceeded",
        "messages",
    )
    assert error["message"].startswith("This model's maximum context length is 512 tokens.")
    body = {
        "model": MODEL,
        "max_completion_tokens": 510,
        "messages": [{"role": "user", "content": "a b c"}],
    }
    error = assert_error(post(fake_server, body), 400, "context_length_exceeded", "messages")
    assert "(6 in the messages, 510 in the completion)" in error["message"]


def test_internal_error_is_generic_and_has_no_trace(fake_server, client: openai.OpenAI) -> None:
    response = post(
        fake_server, {"model": MODEL, "messages": [{"role": "user", "content": "fail in prepare"}]}
    )
    error = assert_error(response, 500, None, None)
    assert error["type"] == "server_error"
    assert (
        error["message"]
        == "The server had an error while processing your request. Sorry about that!"
    )
    assert "Traceback" not in response.text and "RuntimeError" not in response.text
    assert client.chat.completions.create(model=MODEL, messages=HI).choices[0].message.content


def test_lenient_mode_drops_unknown_parameters(make_server) -> None:
    server = make_server(strict_parameters=False)
    response = post(server, {"model": MODEL, "messages": HI, "transcription_model": "x"})
    assert response.status_code == 200


def test_bad_request_is_fast_even_for_a_big_body(make_server) -> None:
    server = make_server(max_body_bytes=1024 * 1024)
    start = time.perf_counter()
    response = httpx.post(
        server.base_url + "/chat/completions",
        content=b"x" * (50 * 1024 * 1024),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert time.perf_counter() - start < 30  # answered from the header, not after reading 50 MB
