"""One response of the Responses API (``POST /v1/responses``), answered through chat.

``ResponsesService.plan`` checks the request and turns it into a chat completion
request over the stored conversation it continues (``responses_input``);
``start`` has ``ChatService`` prepare it, as for chat (spoken input, the engine,
the context window, usage), so every engine answers the Responses API with chat's
guarantees: constrained decoding for strict tools and JSON schemas, cancellation.
The run's events become OpenAI's Responses events (``responses_output``), and a
response asked to be stored (the default) is kept before its last event is sent,
so it can be retrieved as soon as the client has it.

Choices where OpenAI's documentation leaves room (docs/wire-format.md §14): function
tools are strict unless ``strict: false`` (the Responses default); ``truncation:
"auto"`` drops the oldest items of the conversation until it fits the context;
``text.verbosity`` "low" or "high" adds one sentence to the instructions; reasoning
effort "none" is accepted (the models do not reason), any other is a 400;
``background`` is refused (400), so there is nothing to cancel.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from omnivox import ids
from omnivox.errors import ContextLengthExceededError, InvalidRequestError, NotFoundError
from omnivox.protocol import responses_api as wire
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.serving.chat import ChatService, CompletionRun
from omnivox.serving.responses_input import (
    Json,
    chat_request,
    check_served,
    input_items,
    responses_error,
)
from omnivox.serving.responses_output import ResponseWriter, response_object
from omnivox.store.responses import ResponseStore


@dataclass
class ResponsePlan:
    """A checked request: what it continues, what it gives, and the chat request that
    answers it (whose prompt admission estimates)."""

    req: wire.CreateResponseRequest
    owner: str
    snapshot: str  # the model the response names
    chat_model: str
    history: list[Json]
    given: list[Json]
    chat: CreateChatCompletionRequest


@dataclass
class ResponseRun:
    """One response in flight: ``events`` are the Responses events, ``response`` the
    object they build; ``chat`` is the chat run that makes it (and is metered)."""

    response: Json
    chat: CompletionRun
    events: AsyncIterator[Json] = field(init=False)


class ResponsesService:
    def __init__(self, chat: ChatService, store: ResponseStore, retention_s: int) -> None:
        self.chat = chat
        self.store = store
        self.retention_s = retention_s

    async def plan(self, req: wire.CreateResponseRequest, owner: str) -> ResponsePlan:
        """Every check of the request itself; raises in OpenAI's shape."""
        check_served(req)
        catalog = self.chat.catalog
        entry = catalog.get(req.model, "responses")
        chat_model = req.model if catalog.has(req.model, "chat") else catalog.model_id
        given = input_items(req)
        history: list[Json] = []
        if req.previous_response_id is not None:
            found = await asyncio.to_thread(
                self.store.conversation, owner, req.previous_response_id
            )
            if found is None:
                raise NotFoundError(
                    f"Previous response with id '{req.previous_response_id}' not found.",
                    param="previous_response_id",
                    code="previous_response_not_found",
                )
            history = found
        chat = chat_request(req, chat_model, history + given)
        return ResponsePlan(req, owner, entry.snapshot, chat_model, history, given, chat)

    async def start(self, plan: ResponsePlan) -> ResponseRun:
        """The engine's preparation and the context check; raises in OpenAI's shape."""
        run = await self._start_chat(plan)
        response_id = ids.hex_id("resp_")
        run.completion_id = response_id  # the ledger's row names the response
        response = response_object(plan.req, response_id, plan.snapshot, run.created)
        result = ResponseRun(response, run)
        result.events = self._events(plan, result)
        return result

    async def _start_chat(self, plan: ResponsePlan) -> CompletionRun:
        """With ``truncation: "auto"``, the oldest items of the conversation are dropped
        (a call with its output) until it fits the context."""
        chat, history = plan.chat, plan.history
        while True:
            try:
                return await self.chat.start(chat)
            except ContextLengthExceededError as exc:
                if plan.req.truncation != "auto" or not history:
                    raise responses_error(exc) from None
                history = _drop_oldest(history)
                chat = chat_request(plan.req, plan.chat_model, history + plan.given)
            except InvalidRequestError as exc:
                raise responses_error(exc) from None

    async def _events(self, plan: ResponsePlan, run: ResponseRun) -> AsyncIterator[Json]:
        writer = ResponseWriter(run.response, plan.req.wants_logprobs)
        for event in writer.started():
            yield event
        try:
            async for output in run.chat.events:
                for event in writer.write(output):
                    yield event
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            ending = list(writer.failed(exc))
            self._keep(plan, run.response)
            for event in ending:
                yield event
            return
        ending = list(writer.finished())
        self._keep(plan, run.response)  # retrievable once it is told
        for event in ending:
            yield event

    def _keep(self, plan: ResponsePlan, response: Json) -> None:
        """Queue a stored response: found by every read from now on (``ResponseStore``)."""
        if plan.req.stored:
            expires_at = int(time.time()) + self.retention_s
            previous = plan.req.previous_response_id
            self.store.put(plan.owner, response, plan.given, previous, expires_at)


def _drop_oldest(history: list[Json]) -> list[Json]:
    """``history`` without its first item, and without the outputs of any call dropped."""
    dropped = history[0]
    rest = history[1:]
    if dropped["type"] == "function_call":
        rest = [
            item
            for item in rest
            if not (
                item["type"] == "function_call_output" and item["call_id"] == dropped["call_id"]
            )
        ]
    while rest and rest[0]["type"] == "function_call_output":  # its call is gone
        rest = rest[1:]
    return rest
