"""The tools of a request, and the choice among them.

``tools`` (or the legacy ``functions``) become ``ToolSpec`` s; ``tool_choice``
(or ``function_call``) becomes one name: "none", "auto", "required" or a
function's. ``allowed_tools`` narrows the tools to those it lists (in the
order of ``tools``) and becomes its ``mode``, "auto" or "required". Custom
tools are refused with a 400; so is a choice of a function that is not among
the tools, or a tool choice without tools (OpenAI's wording).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NoReturn

from omnivox.engines.base import ToolSpec
from omnivox.errors import InvalidRequestError, InvalidValueError
from omnivox.protocol import requests as wire

DEFAULT_TOOL_CHOICE_WITH_TOOLS = "auto"


def check_tool_rules(req: wire.CreateChatCompletionRequest) -> None:
    """A tool choice needs tools to choose from (OpenAI's wording); custom tools are refused."""
    if not req.tools:
        if req.tool_choice is not None and req.tool_choice != "none":
            _only_with("tool_choice", "tools")
        if req.parallel_tool_calls is not None:
            _only_with("parallel_tool_calls", "tools")
    if not req.functions and req.function_call is not None and req.function_call != "none":
        _only_with("function_call", "functions")
    for i, tool in enumerate(req.tools or ()):
        if isinstance(tool, wire.ChatCompletionCustomToolParam):
            _custom_tools_refused(f"tools[{i}].type", "'function'")
    choice = req.tool_choice
    if isinstance(choice, wire.ChatCompletionNamedToolChoiceCustomParam):
        _custom_tools_refused("tool_choice.type", "'function', 'allowed_tools'")
    if isinstance(choice, wire.ChatCompletionAllowedToolChoiceParam):
        for j, allowed in enumerate(choice.allowed_tools.tools):
            if isinstance(allowed, wire.ChatCompletionNamedToolChoiceCustomParam):
                _custom_tools_refused(f"tool_choice.allowed_tools.tools[{j}].type", "'function'")


def check_tool_messages(messages: Sequence[wire.ChatCompletionMessageParam]) -> None:
    """OpenAI's pairing of tool calls and tool messages: a ``tool`` message answers one
    of the calls of the assistant message just before it (other tool messages between),
    and every call of an assistant message is answered before anything else follows."""
    unanswered: list[str] = []  # the open calls of the last assistant message with calls
    calls: set[str] = set()
    asked_at = -1
    for i, message in enumerate(messages):
        if isinstance(message, wire.ChatCompletionToolMessageParam):
            if asked_at < 0:
                raise InvalidRequestError(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            if message.tool_call_id not in calls:
                raise InvalidRequestError(
                    f"Invalid parameter: 'tool_call_id' of '{message.tool_call_id}' not found "
                    "in 'tool_calls' of previous message.",
                    param=f"messages.[{i}].tool_call_id",
                )
            if message.tool_call_id in unanswered:
                unanswered.remove(message.tool_call_id)
            continue
        _check_answered(unanswered, asked_at)
        asked_at = -1
        if isinstance(message, wire.ChatCompletionAssistantMessageParam) and message.tool_calls:
            unanswered = [call.id for call in message.tool_calls]
            calls, asked_at = set(unanswered), i
    _check_answered(unanswered, asked_at)


def _check_answered(unanswered: list[str], asked_at: int) -> None:
    if unanswered:
        raise InvalidRequestError(
            "An assistant message with 'tool_calls' must be followed by tool messages "
            "responding to each 'tool_call_id'. The following tool_call_ids did not have "
            f"response messages: {', '.join(unanswered)}",
            param=f"messages.[{asked_at}].role",
        )


def _custom_tools_refused(param: str, supported: str) -> NoReturn:
    raise InvalidValueError(
        f"Invalid value: 'custom'. Custom tools are not supported by this server; "
        f"supported values are: {supported}.",
        param=param,
    )


def _only_with(name: str, needed: str) -> None:
    raise InvalidValueError(
        f"Invalid value for '{name}': '{name}' is only allowed when '{needed}' are specified.",
        param=name,
    )


def tool_specs(req: wire.CreateChatCompletionRequest) -> tuple[tuple[ToolSpec, ...], str, bool]:
    """Tools (or legacy functions), the tool choice, and whether calls may run in parallel.

    ``allowed_tools`` narrows the tools to those it lists (in the order of
    ``tools``) and becomes its ``mode``, "auto" or "required".
    """
    functions: Iterable[wire.FunctionDefinition] = (
        [t.function for t in req.tools if isinstance(t, wire.ChatCompletionFunctionToolParam)]
        if req.tools
        else (req.functions or [])
    )
    specs = tuple(ToolSpec(f.name, f.description, f.parameters, bool(f.strict)) for f in functions)
    choice = req.tool_choice if req.tools else req.function_call
    if choice is None:
        name = DEFAULT_TOOL_CHOICE_WITH_TOOLS if specs else "none"
    elif isinstance(choice, str):
        name = choice
    elif isinstance(choice, wire.ChatCompletionAllowedToolChoiceParam):
        allowed = [
            t.function.name
            for t in choice.allowed_tools.tools
            if isinstance(t, wire.ChatCompletionNamedToolChoiceParam)
        ]
        for wanted in allowed:
            _check_named(req, wanted, {s.name for s in specs})
        specs = tuple(s for s in specs if s.name in allowed)
        name = choice.allowed_tools.mode
    elif isinstance(choice, wire.ChatCompletionNamedToolChoiceParam):
        name = choice.function.name
    elif isinstance(choice, wire.NamedFunction):
        name = choice.name
    else:  # a custom tool, refused by check_request_rules
        _custom_tools_refused("tool_choice.type", "'function', 'allowed_tools'")
    if name not in ("none", "auto", "required"):
        _check_named(req, name, {s.name for s in specs})
    parallel = req.parallel_tool_calls is not False and req.functions is None
    return specs, name, parallel


def _check_named(req: wire.CreateChatCompletionRequest, name: str, known: set[str]) -> None:
    if name not in known:
        param = "tool_choice" if req.tools else "function_call"
        raise InvalidValueError(
            f"Invalid value for '{param}': no function named '{name}' was specified in the "
            f"'{'tools' if req.tools else 'functions'}' parameter.",
            param=param,
        )
