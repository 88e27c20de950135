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
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from omnivox import ids
from omnivox.errors import (
    ContextLengthExceededError,
    InvalidRequestError,
    NotFoundError,
    OmnivoxError,
)
from omnivox.protocol import responses_api as wire
from omnivox.serving.chat import ChatService, CompletionRun
from omnivox.serving.responses_input import (
    ChatForm,
    Json,
    chat_request,
    check_conversation,
    check_served,
    input_items,
)
from omnivox.serving.responses_output import ResponseWriter, response_object
from omnivox.serving.usage import estimate_prompt_tokens
from omnivox.store.responses import ResponseStore

log = logging.getLogger(__name__)


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
    chat: ChatForm


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
        check_conversation(history, given)
        chat = chat_request(req, chat_model, history, given)
        return ResponsePlan(req, owner, entry.snapshot, chat_model, history, given, chat)

    def prompt_estimate(self, plan: ResponsePlan) -> int:
        """The prompt tokens admission reserves: at most a context's worth when the
        conversation is cut to fit."""
        estimate = estimate_prompt_tokens(plan.chat.request)
        if plan.req.truncation == "auto":
            estimate = min(estimate, self.chat.engine.context_window_tokens)
        return estimate

    async def start(
        self, plan: ResponsePlan, *, streaming: bool, background: bool = False
    ) -> ResponseRun:
        """The engine's preparation and the context check; raises in OpenAI's shape.
        ``streaming``: a failure once the events have begun fails the response (its
        last event); otherwise it is raised, as chat's is. ``background``: nobody waits
        on it (a batch's line), so it yields the engine to everyone else, as chat's does."""
        run = await self._start_chat(plan, background=background)
        response_id = ids.hex_id("resp_")
        run.completion_id = response_id  # the ledger's row names the response
        response = response_object(plan.req, response_id, plan.snapshot, run.created)
        result = ResponseRun(response, run)
        result.events = self._events(plan, result, streaming)
        return result

    async def _start_chat(self, plan: ResponsePlan, *, background: bool) -> CompletionRun:
        """With ``truncation: "auto"``, a conversation past the context loses its oldest
        turns: the fewest that make it fit, found by bisection (each try is one
        preparation, so a conversation of n turns costs about log2(n) of them)."""
        try:
            return await self.chat.start(plan.chat.request, background=background)
        except ContextLengthExceededError as exc:
            if plan.req.truncation != "auto" or not plan.history:
                raise plan.chat.error(exc) from None
            too_long = exc
        except InvalidRequestError as exc:
            raise plan.chat.error(exc) from None
        cuts = turn_starts(plan.history)
        fitted: CompletionRun | None = None
        low, high = 0, len(cuts) - 1  # the first cut that fits lies in [low, high]
        while low <= high:
            middle = (low + high) // 2
            form = chat_request(plan.req, plan.chat_model, plan.history[cuts[middle] :], plan.given)
            try:
                run = await self.chat.start(form.request, background=background)
            except ContextLengthExceededError as exc:
                too_long = exc
                low = middle + 1
                continue
            except InvalidRequestError as exc:
                raise form.error(exc) from None
            if fitted is not None:
                await fitted.events.aclose()  # type: ignore[attr-defined]  # never begun
            fitted, high = run, middle - 1
        if fitted is None:
            raise plan.chat.error(too_long) from None
        return fitted

    async def _events(
        self, plan: ResponsePlan, run: ResponseRun, streaming: bool
    ) -> AsyncIterator[Json]:
        writer = ResponseWriter(run.response, plan.req.wants_logprobs)
        for event in writer.started():
            yield event
        try:
            async for output in run.chat.events:
                for event in writer.write(output):
                    yield event
        except Exception as exc:
            if not streaming:
                raise
            if not isinstance(exc, OmnivoxError):
                log.exception("a response failed after its stream had started")
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


def turn_starts(history: list[Json]) -> list[int]:
    """Where a conversation may begin once its oldest items are dropped: after the first,
    at a user message that no later function call output reaches back past, or nowhere
    (``len(history)``: all of it dropped), in order."""
    calls = {
        item["call_id"]: i for i, item in enumerate(history) if item["type"] == "function_call"
    }
    reached_back = [0] * (len(history) + 1)  # +1 where an output's call lies before, -1 after it
    for j, item in enumerate(history):
        if item["type"] == "function_call_output" and item["call_id"] in calls:
            reached_back[calls[item["call_id"]] + 1] += 1
            reached_back[j + 1] -= 1
    starts, open_pairs = [], 0
    for c, item in enumerate(history):
        open_pairs += reached_back[c]
        if c > 0 and open_pairs == 0 and item["type"] == "message" and item["role"] == "user":
            starts.append(c)
    return [*starts, len(history)]
