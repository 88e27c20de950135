"""The Responses API's output: the response object, and chat's output events as
OpenAI's Responses events (``response.created`` ... ``response.completed``).

``ResponseWriter`` reads the events of one chat run (one choice, text only) and
yields each Responses event as a dict with its ``sequence_number``, building the
response object as it goes: a ``message`` item for text (one ``output_text`` part),
a ``function_call`` item per tool call, usage at the end. An answer cut by
``max_output_tokens`` ends ``incomplete``; a failure after the first byte
``failed``, with OpenAI's error in the response.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from omnivox import ids
from omnivox.errors import OmnivoxError, ServerError
from omnivox.protocol import responses_api as wire
from omnivox.protocol.responses import CompletionUsage
from omnivox.serving.outputs import (
    ChoiceFinish,
    ChoiceText,
    ChoiceToolCall,
    OutputEvent,
    UsageReady,
    wire_logprobs,
)

Json = dict[str, Any]


def response_object(
    req: wire.CreateResponseRequest, response_id: str, snapshot: str, created_at: int
) -> Json:
    """The response object as OpenAI's, ``in_progress`` with no output yet."""
    fmt = req.text.format if req.text and req.text.format else wire.FormatText(type="text")
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "max_tool_calls": req.max_tool_calls,
        "model": snapshot,
        "output": [],
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "previous_response_id": req.previous_response_id,
        "prompt_cache_key": req.prompt_cache_key,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": req.safety_identifier,
        "service_tier": "default",
        "store": req.stored,
        "temperature": req.temperature if req.temperature is not None else 1.0,
        "text": {
            "format": fmt.model_dump(by_alias=True, exclude_none=True),
            "verbosity": (req.text.verbosity if req.text else None) or "medium",
        },
        "tool_choice": _echo_tool_choice(req.tool_choice),
        "tools": [_echo_tool(t) for t in req.tools or [] if isinstance(t, wire.FunctionTool)],
        "top_logprobs": req.top_logprobs or 0,
        "top_p": req.top_p if req.top_p is not None else 1.0,
        "truncation": req.truncation or "disabled",
        "usage": None,
        "user": req.user,
        "metadata": req.metadata or {},
    }


def _echo_tool(tool: wire.FunctionTool) -> Json:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": tool.strict is not False,
    }


def _echo_tool_choice(choice: Any) -> Any:
    if choice is None:
        return "auto"
    return choice if isinstance(choice, str) else choice.model_dump()


def responses_usage(usage: CompletionUsage) -> Json:
    """Chat's usage in the Responses API's words (input = text and audio tokens)."""
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.prompt_tokens_details.cached_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


@dataclass
class _OpenText:
    item: Json
    output_index: int
    text: list[str] = field(default_factory=list)
    logprobs: list[Json] = field(default_factory=list)


@dataclass
class _OpenCall:
    item: Json
    output_index: int
    call_index: int


class ResponseWriter:
    """Chat's output events -> the Responses API's events (each a dict with its
    ``sequence_number``), building ``response`` as they go."""

    def __init__(self, response: Json, want_logprobs: bool) -> None:
        self.response = response
        self._want_logprobs = want_logprobs
        self._sequence = 0
        self._text: _OpenText | None = None
        self._call: _OpenCall | None = None
        self._cut = False  # the answer reached max_output_tokens

    def event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event

    def started(self) -> Iterator[Json]:
        yield self.event("response.created", response=self.response)
        yield self.event("response.in_progress", response=self.response)

    def write(self, event: OutputEvent) -> Iterator[Json]:
        if isinstance(event, ChoiceText):
            yield from self._write_text(event)
        elif isinstance(event, ChoiceToolCall):
            yield from self._write_call(event)
        elif isinstance(event, ChoiceFinish):
            self._cut = event.reason == "length"
            yield from self._close()
        elif isinstance(event, UsageReady):
            self.response["usage"] = responses_usage(event.usage)

    def finished(self) -> Iterator[Json]:
        yield from self._close()
        response = self.response
        if self._cut:
            response["status"] = "incomplete"
            response["incomplete_details"] = {"reason": "max_output_tokens"}
            yield self.event("response.incomplete", response=response)
        else:
            response["status"] = "completed"
            response["completed_at"] = int(time.time())
            yield self.event("response.completed", response=response)

    def failed(self, exc: BaseException) -> Iterator[Json]:
        """After the first byte: the response fails, with OpenAI's error in it and the
        output made until then (its open item ``incomplete``)."""
        error = exc if isinstance(exc, OmnivoxError) else ServerError()
        self._cut = True
        sequence = self._sequence
        for _ in self._close():  # the open item is kept in the response, unannounced
            pass
        self._sequence = sequence
        self.response["status"] = "failed"
        self.response["error"] = {"code": error.code or "server_error", "message": error.message}
        yield self.event("response.failed", response=self.response)

    # -- items

    def _write_text(self, event: ChoiceText) -> Iterator[Json]:
        if self._call is not None:
            yield from self._close()
        if self._text is None:
            yield from self._open_text()
        text = self._text
        assert text is not None
        logprobs = self._logprobs(event) if self._want_logprobs else []
        text.text.append(event.text)
        text.logprobs += logprobs
        yield self.event(
            "response.output_text.delta",
            item_id=text.item["id"],
            output_index=text.output_index,
            content_index=0,
            delta=event.text,
            logprobs=logprobs,
        )

    def _open_text(self) -> Iterator[Json]:
        item = {
            "id": ids.hex_id("msg_"),
            "type": "message",
            "status": "in_progress",
            "content": [],
            "role": "assistant",
        }
        index = len(self.response["output"])
        self.response["output"].append(item)
        self._text = _OpenText(item, index)
        yield self.event("response.output_item.added", output_index=index, item=dict(item))
        yield self.event(
            "response.content_part.added",
            item_id=item["id"],
            output_index=index,
            content_index=0,
            part={"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
        )

    def _write_call(self, event: ChoiceToolCall) -> Iterator[Json]:
        if self._text is not None or (
            self._call is not None and self._call.call_index != event.call_index
        ):
            yield from self._close()
        if self._call is None:
            item = {
                "id": ids.hex_id("fc_"),
                "type": "function_call",
                "status": "in_progress",
                "arguments": "",
                "call_id": event.call_id or ids.tool_call_id(),
                "name": event.name or "",
            }
            index = len(self.response["output"])
            self.response["output"].append(item)
            self._call = _OpenCall(item, index, event.call_index)
            yield self.event("response.output_item.added", output_index=index, item=dict(item))
        call = self._call
        if event.arguments:
            call.item["arguments"] += event.arguments
            yield self.event(
                "response.function_call_arguments.delta",
                item_id=call.item["id"],
                output_index=call.output_index,
                delta=event.arguments,
            )

    def _close(self) -> Iterator[Json]:
        status = "incomplete" if self._cut else "completed"
        if self._text is not None:
            text, self._text = self._text, None
            whole = "".join(text.text)
            part = {
                "type": "output_text",
                "annotations": [],
                "logprobs": text.logprobs,
                "text": whole,
            }
            common = {"item_id": text.item["id"], "output_index": text.output_index}
            yield self.event(
                "response.output_text.done",
                **common,
                content_index=0,
                text=whole,
                logprobs=text.logprobs,
            )
            yield self.event("response.content_part.done", **common, content_index=0, part=part)
            text.item["content"] = [part]
            text.item["status"] = status
            yield self.event(
                "response.output_item.done", output_index=text.output_index, item=text.item
            )
        if self._call is not None:
            call, self._call = self._call, None
            call.item["status"] = status
            yield self.event(
                "response.function_call_arguments.done",
                item_id=call.item["id"],
                output_index=call.output_index,
                name=call.item["name"],
                arguments=call.item["arguments"],
            )
            yield self.event(
                "response.output_item.done", output_index=call.output_index, item=call.item
            )

    @staticmethod
    def _logprobs(event: ChoiceText) -> list[Json]:
        content = wire_logprobs(event.logprobs).content or []
        return [lp.model_dump() for lp in content]
