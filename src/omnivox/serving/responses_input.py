"""The Responses API's request as a chat completion request (``POST /v1/responses``).

``instructions`` become a system message, the stored conversation of
``previous_response_id`` and then ``input`` the messages (a function call an
assistant message's tool call, its output a tool message), function tools,
``tool_choice``, ``text.format`` and the sampling options their chat equivalents.
``input_items`` gives the input in OpenAI's listed shape, each item with its id:
what is stored, listed by ``/input_items`` and continued later.

Where chat's checks name a chat parameter, ``responses_error`` renames it to the
Responses one (``messages`` -> ``input``, ``response_format`` -> ``text.format``...).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from omnivox import ids
from omnivox.errors import InvalidRequestError, OmnivoxError
from omnivox.protocol import responses_api as wire
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.validation import to_openai_error

VERBOSITY_INSTRUCTIONS = {
    "low": "Answer as briefly as the question allows.",
    "high": "Answer thoroughly, with detail and examples.",
}
NOT_SERVED_PARTS = {"input_image": "Images", "input_file": "Files"}
# Chat's parameter names, as the Responses API names them (longest first).
RESPONSES_PARAMS = (
    ("response_format.json_schema.", "text.format."),
    ("response_format", "text.format"),
    ("max_completion_tokens", "max_output_tokens"),
    ("tool_choice.allowed_tools.", "tool_choice."),
    ("tool_choice.function.", "tool_choice."),
)
# ... and in an error's words
CHAT_WORDS = (
    ("'response_format'", "'text.format'"),
    ("max_completion_tokens", "max_output_tokens"),
    ("'messages'", "'input'"),
    ("your messages", "your input"),
    ("length of the messages", "length of the input"),
)
CHAT_MESSAGE = re.compile(r"^messages(?:\.?\[(\d+)\](.*))?")
FUNCTION_FIELD = re.compile(r"(tools\[\d+\])\.function\.")
NO_PARAMETERS = {"type": "object", "properties": {}, "required": [], "additionalProperties": False}

Json = dict[str, Any]


def check_served(req: wire.CreateResponseRequest) -> None:
    """Refuse, in words naming the parameter, what omnivox does not serve."""
    for name in wire.UNSUPPORTED_PARAMETERS:
        if getattr(req, name) is not None:
            _unsupported(name)
    if req.background:
        _unsupported("background", "Background responses are not supported by this server.")
    if req.reasoning is not None:
        if req.reasoning.effort not in (None, "none"):
            raise InvalidRequestError(
                f"Unsupported value: 'reasoning.effort' does not support "
                f"'{req.reasoning.effort}' with this model. Supported values are: 'none'.",
                param="reasoning.effort",
                code="unsupported_value",
            )
        if req.reasoning.summary is not None or req.reasoning.generate_summary is not None:
            _unsupported("reasoning.summary", "This model does not reason, so has no summary.")
    for i, tool in enumerate(req.tools or []):
        if isinstance(tool, wire.OtherTool):
            raise InvalidRequestError(
                f"Unsupported tool type: '{tool.type}'. This server runs function tools only "
                "(type 'function').",
                param=f"tools[{i}].type",
                code="unsupported_value",
            )
    if isinstance(req.tool_choice, wire.OtherToolChoice):
        raise InvalidRequestError(
            f"Unsupported value: 'tool_choice.type' does not support '{req.tool_choice.type}'. "
            "Supported values are: 'function' and 'allowed_tools'.",
            param="tool_choice.type",
            code="unsupported_value",
        )
    if req.input is None:
        raise InvalidRequestError(
            "Missing required parameter: 'input'.",
            param="input",
            code="missing_required_parameter",
        )
    if req.top_logprobs and not req.wants_logprobs:
        raise InvalidRequestError(
            f"'top_logprobs' needs 'include' to contain '{wire.LOGPROBS_INCLUDE}'.",
            param="top_logprobs",
            code="invalid_value",
        )


def _unsupported(name: str, why: str = "") -> None:
    raise InvalidRequestError(
        f"Unsupported parameter: '{name}' is not supported with this model."
        + (f" {why}" if why else ""),
        param=name,
        code="unsupported_parameter",
    )


def input_items(req: wire.CreateResponseRequest) -> list[Json]:
    """The request's input as items in OpenAI's listed shape, each with its id."""
    assert req.input is not None  # check_served
    if isinstance(req.input, str):
        return [_message("user", [{"type": "input_text", "text": req.input}])]
    items: list[Json] = []
    for i, item in enumerate(req.input):
        if isinstance(item, wire.MessageItem):
            items.append(_message_item(item, i))
        elif isinstance(item, wire.FunctionCallItem):
            items.append(
                {
                    "id": item.id or ids.hex_id("fc_"),
                    "type": "function_call",
                    "status": "completed",
                    "call_id": item.call_id,
                    "name": item.name,
                    "arguments": item.arguments,
                }
            )
        elif isinstance(item, wire.FunctionCallOutputItem):
            output: str | list[Json] = (
                item.output
                if isinstance(item.output, str)
                else [_output_part(p, f"input[{i}].output[{j}]") for j, p in enumerate(item.output)]
            )
            items.append(
                {
                    "id": item.id or ids.hex_id("fco_"),
                    "type": "function_call_output",
                    "status": "completed",
                    "call_id": item.call_id,
                    "output": output,
                }
            )
        else:
            raise InvalidRequestError(
                f"Unsupported input item type: '{item.type}'. This server takes messages, "
                "function_call and function_call_output items.",
                param=f"input[{i}].type",
                code="unsupported_value",
            )
    return items


def _output_part(part: Any, param: str) -> Json:
    """A part of a function call's output: text, which is what the model reads of it."""
    if isinstance(part, wire.InputTextPart):
        return {"type": "input_text", "text": part.text}
    raise InvalidRequestError(
        f"Unsupported value: '{part.type}'. A function call's output is given to this "
        "model as text: 'input_text' parts, or a string.",
        param=f"{param}.type",
        code="unsupported_value",
    )


def _message(role: str, content: list[Json], item_id: str | None = None) -> Json:
    return {
        "id": item_id or ids.hex_id("msg_"),
        "type": "message",
        "status": "completed",
        "role": role,
        "content": content,
    }


def _message_item(item: wire.MessageItem, i: int) -> Json:
    text_type = "output_text" if item.role == "assistant" else "input_text"
    if isinstance(item.content, str):
        parts = [_text_part(text_type, item.content)]
    else:
        parts = [_part(p, f"input[{i}].content[{j}]") for j, p in enumerate(item.content)]
    for j, part in enumerate(parts):
        allowed = _ALLOWED_PARTS["assistant" if item.role == "assistant" else item.role]
        if part["type"] not in allowed:
            listed = " and ".join(f"'{t}'" for t in allowed)
            raise InvalidRequestError(
                f"Invalid value: '{part['type']}'. Supported values are: {listed}.",
                param=f"input[{i}].content[{j}].type",
                code="invalid_value",
            )
    return _message(item.role, parts, item.id)


_ALLOWED_PARTS = {
    "user": ("input_text", "input_audio"),
    "system": ("input_text",),
    "developer": ("input_text",),
    "assistant": ("output_text", "refusal"),
}


def _text_part(kind: str, text: str) -> Json:
    return (
        {"type": kind, "text": text, "annotations": []}
        if kind == "output_text"
        else {
            "type": kind,
            "text": text,
        }
    )


def _part(part: Any, param: str) -> Json:
    if isinstance(part, wire.InputTextPart):
        return {"type": "input_text", "text": part.text}
    if isinstance(part, wire.OutputTextPart):
        return _text_part("output_text", part.text)
    if isinstance(part, wire.InputAudioPart):
        return {"type": "input_audio", "input_audio": part.input_audio.model_dump()}
    if isinstance(part, wire.RefusalPart):
        return {"type": "refusal", "refusal": part.refusal}
    raise InvalidRequestError(
        f"{NOT_SERVED_PARTS[part.type]} are not supported by this model: it takes text and "
        "audio ('input_text', 'input_audio').",
        param=f"{param}.type",
        code="unsupported_value",
    )


def chat_messages(items: list[Json]) -> tuple[list[Json], list[int]]:
    """Items (stored or given) as chat messages, and for each message the index of the
    item it comes from: consecutive function calls join the assistant message before
    them as its tool calls."""
    messages: list[Json] = []
    sources: list[int] = []
    for index, item in enumerate(items):
        kind = item["type"]
        if kind == "message":
            messages.append(_chat_message(item))
            sources.append(index)
        elif kind == "function_call":
            call = {
                "id": item["call_id"],
                "type": "function",
                "function": {"name": item["name"], "arguments": item["arguments"]},
            }
            last = messages[-1] if messages else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": None}
                messages.append(last)
                sources.append(index)
            last.setdefault("tool_calls", []).append(call)
        elif kind == "function_call_output":
            output = item["output"]
            if not isinstance(output, str):
                output = "".join(p["text"] for p in output)
            messages.append({"role": "tool", "tool_call_id": item["call_id"], "content": output})
            sources.append(index)
    return messages, sources


def check_conversation(history: list[Json], given: list[Json]) -> None:
    """OpenAI's rules for the conversation a request makes: no item twice, every
    function call's output after its call, every call answered by its output."""
    seen: set[str] = set()
    for item in history + given:
        if item["id"] in seen:
            raise InvalidRequestError(
                f"Duplicate item found with id {item['id']}. Remove duplicate items from "
                "your input and try again.",
                param="input",
            )
        seen.add(item["id"])
    calls: dict[str, bool] = {}  # call id -> answered
    for item in history + given:
        if item["type"] == "function_call":
            calls[item["call_id"]] = False
        elif item["type"] == "function_call_output":
            if item["call_id"] not in calls:
                raise InvalidRequestError(
                    f"No tool call found for function call output with call_id {item['call_id']}.",
                    param="input",
                )
            calls[item["call_id"]] = True
    unanswered = [call_id for call_id, answered in calls.items() if not answered]
    if unanswered:
        raise InvalidRequestError(
            f"No tool output found for function call {unanswered[0]}.", param="input"
        )


def _chat_message(item: Json) -> Json:
    role, parts = item["role"], item["content"]
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] != "refusal")
        refusals = "".join(p["refusal"] for p in parts if p["type"] == "refusal")
        message: Json = {"role": "assistant", "content": text or None}
        if refusals:
            message["refusal"] = refusals
        return message
    if role != "user":
        return {"role": role, "content": [{"type": "text", "text": p["text"]} for p in parts]}
    content = [
        {"type": "input_audio", "input_audio": p["input_audio"]}
        if p["type"] == "input_audio"
        else {"type": "text", "text": p["text"]}
        for p in parts
    ]
    return {"role": "user", "content": content}


@dataclass(frozen=True)
class ChatForm:
    """A Responses request as chat: the request, and where each chat message came from
    (the index in ``input`` of the item it was made from; None for the instructions and
    the stored conversation), to name the Responses parameter in chat's errors."""

    request: CreateChatCompletionRequest
    sources: tuple[int | None, ...]

    def error(self, exc: OmnivoxError) -> OmnivoxError:
        return responses_error(exc, self.sources)


def chat_request(
    req: wire.CreateResponseRequest, model: str, history: list[Json], given: list[Json]
) -> ChatForm:
    """The chat completion request that answers ``req`` over ``history`` + ``given``."""
    messages: list[Json] = []
    if req.instructions:
        messages.append({"role": "system", "content": req.instructions})
    verbosity = req.text.verbosity if req.text else None
    if verbosity in VERBOSITY_INSTRUCTIONS:
        messages.append({"role": "system", "content": VERBOSITY_INSTRUCTIONS[verbosity]})
    conversation, made_from = chat_messages(history + given)
    given_at = len(history) if isinstance(req.input, list) else None  # a string: "input"
    sources: list[int | None] = [None] * len(messages)
    sources += [
        index - given_at if given_at is not None and index >= given_at else None
        for index in made_from
    ]
    messages += conversation
    body: Json = {
        "model": model,
        "messages": messages,
        "modalities": ["text"],
        "temperature": req.temperature,
        "top_p": req.top_p,
        "max_completion_tokens": req.max_output_tokens,
        "parallel_tool_calls": req.parallel_tool_calls,
        "user": req.user,
        "safety_identifier": req.safety_identifier,
        "prompt_cache_key": req.prompt_cache_key,
    }
    if req.tools:
        body["tools"] = [
            {"type": "function", "function": _function(tool)}
            for tool in req.tools
            if isinstance(tool, wire.FunctionTool)
        ]
    if req.tool_choice is not None:
        body["tool_choice"] = _chat_tool_choice(req.tool_choice)
    fmt = req.text.format if req.text else None
    if isinstance(fmt, wire.FormatJSONSchema):
        schema = {"name": fmt.name, "schema": fmt.schema_, "strict": fmt.strict}
        if fmt.description is not None:
            schema["description"] = fmt.description
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt is not None:
        body["response_format"] = {"type": fmt.type}
    if req.wants_logprobs:
        body["logprobs"] = True
        body["top_logprobs"] = req.top_logprobs
    body = {k: v for k, v in body.items() if v is not None}
    try:
        return ChatForm(CreateChatCompletionRequest.model_validate(body), tuple(sources))
    except ValidationError as exc:
        raise responses_error(to_openai_error(exc, body), sources) from None


def _function(tool: wire.FunctionTool) -> Json:
    function: Json = {"name": tool.name, "strict": tool.strict is not False}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.parameters if tool.parameters is not None else NO_PARAMETERS
    return function


def _chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, wire.NamedFunctionChoice):
        return {"type": "function", "function": {"name": choice.name}}
    tools = [
        {"type": "function", "function": {"name": tool.get("name")}}
        if tool.get("type") == "function"
        else tool
        for tool in choice.tools
    ]
    return {"type": "allowed_tools", "allowed_tools": {"mode": choice.mode, "tools": tools}}


def responses_error(exc: OmnivoxError, sources: Sequence[int | None] = ()) -> OmnivoxError:
    """``exc`` (raised by chat's checks) in the Responses API's words: its parameter
    renamed (``messages[k]...`` to the ``input[i]...`` that message came from, by
    ``sources``), and chat's names in its message too."""
    param = exc.param
    if param:
        renamed = param
        if (message := CHAT_MESSAGE.match(param)) is not None:
            k = int(message[1]) if message[1] is not None else len(sources)
            source = sources[k] if k < len(sources) else None
            rest = (message[2] or "").replace(".[", "[")
            renamed = "input" if source is None else f"input[{source}]{rest}"
        else:
            for chat_name, name in RESPONSES_PARAMS:
                if param.startswith(chat_name):
                    renamed = name + param[len(chat_name) :]
                    break
        renamed = FUNCTION_FIELD.sub(r"\1.", renamed)  # tools[i].function.x -> tools[i].x
        exc.message = exc.message.replace(param, renamed)
        exc.param = renamed
    for chat_words, words in CHAT_WORDS:
        exc.message = exc.message.replace(chat_words, words)
    return exc
