"""``/v1/responses``: OpenAI's Responses API, answered through the chat path.

``POST /v1/responses`` is admitted, metered and charged as a chat completion (the
same keys, limits and ledger; the ledger's row is named by the response id) and
counts as interactive load, so batch lines wait for it. Streamed, it is OpenAI's
event stream (``event: <type>`` and ``data: <event>`` per event, no ``[DONE]``); a
client that leaves cancels the generation. Stored responses are read, listed and
deleted per key: another key's response is answered as one that does not exist.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic_core import to_json

from omnivox.access.gate import AccessControl, Caller
from omnivox.errors import InvalidRequestError, NotFoundError
from omnivox.protocol.responses_api import (
    CreateResponseRequest,
    ListInputItemsQuery,
)
from omnivox.server.admission import admitted, close_run, refused_before_admission
from omnivox.server.batch_routes import InteractiveLoad
from omnivox.server.bodies import read_request, validated
from omnivox.server.disconnect import cancelled_if_client_leaves
from omnivox.server.event_stream import EventStreamResponse
from omnivox.server.openapi import RESPONSES_PATH
from omnivox.serving import sse
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.inputs import output_token_limit
from omnivox.serving.responses_api import ResponseRun, ResponsesService

SSE_MEDIA_TYPE = "text/event-stream"
FINAL_EVENTS = (
    b"event: response.completed",
    b"event: response.incomplete",
    b"event: response.failed",
)


def add_responses_routes(
    app: FastAPI,
    authenticate: Callable[[Request], Caller],
    gate: AccessControl,
    catalog: ModelCatalog,
    service: ResponsesService,
    load: InteractiveLoad,
    *,
    strict_parameters: bool,
) -> Callable[[Request], Awaitable[Response]]:
    """Registers the routes; returns the create handler, which the app also answers
    in front of FastAPI (``app.OmnivoxApp``)."""

    @app.post(RESPONSES_PATH)
    async def create_response(request: Request) -> Response:
        return await load.serve(_answer, request)

    async def _answer(request: Request) -> Response:
        caller = authenticate(request)
        request_id = request.state.request_id
        async with refused_before_admission(
            gate,
            caller,
            request_id,
            lambda: getattr(request.state, "model", ""),
            catalog.find_snapshot,
        ):
            req = await read_request(request, CreateResponseRequest, strict=strict_parameters)
            plan = await service.plan(req, caller.key_id)
            max_output = output_token_limit(plan.chat.request)[0]
        estimate = service.prompt_estimate(plan) if caller.key is not None else 0
        async with admitted(
            gate, caller, req.model, plan.snapshot, max_output, estimate, request_id
        ) as admission:
            run = await service.start(plan, streaming=req.streaming)
            await admission.charge(run.chat)
            response: Response
            if req.streaming:

                async def stream_ended() -> None:
                    await close_run(run.chat, run.events)

                response = EventStreamResponse(
                    sse.coalesce(_events(run)),
                    media_type=SSE_MEDIA_TYPE,
                    on_end=stream_ended,
                    is_last=_ends_response,
                )
            else:
                async with cancelled_if_client_leaves(request.receive):
                    async for _event in run.events:
                        pass
                response = _json(run.response)
        response.headers.update(admission.headers)
        return response

    @app.get(RESPONSES_PATH + "/{response_id}")
    async def retrieve_response(request: Request, response_id: str) -> Response:
        owner = authenticate(request).key_id
        if request.query_params.get("stream", "false").lower() != "false":
            raise InvalidRequestError(
                "A stored response is retrieved whole: only background responses can be "
                "streamed again, and this server runs none.",
                param="stream",
                code="unsupported_value",
            )
        stored = await asyncio.to_thread(service.store.get, owner, response_id)
        if stored is None:
            raise _not_found(response_id)
        return _json(stored.body)

    @app.delete(RESPONSES_PATH + "/{response_id}")
    async def delete_response(request: Request, response_id: str) -> Response:
        owner = authenticate(request).key_id
        if not await asyncio.to_thread(service.store.delete, owner, response_id):
            raise _not_found(response_id)
        return _json({"id": response_id, "object": "response", "deleted": True})

    @app.post(RESPONSES_PATH + "/{response_id}/cancel")
    async def cancel_response(request: Request, response_id: str) -> Response:
        owner = authenticate(request).key_id
        if await asyncio.to_thread(service.store.get, owner, response_id) is None:
            raise _not_found(response_id)
        raise InvalidRequestError(
            "Only responses created with background=true can be cancelled; this server "
            "does not run background responses.",
            param="response_id",
        )

    @app.get(RESPONSES_PATH + "/{response_id}/input_items")
    async def list_input_items(request: Request, response_id: str) -> Response:
        owner = authenticate(request).key_id
        query = validated(ListInputItemsQuery, dict(request.query_params))
        stored = await asyncio.to_thread(service.store.get, owner, response_id)
        if stored is None:
            raise _not_found(response_id)
        items = stored.input_items if query.order == "asc" else stored.input_items[::-1]
        if query.after is not None:
            positions = [i for i, item in enumerate(items) if item.get("id") == query.after]
            if not positions:
                raise NotFoundError(
                    f"No input item with id '{query.after}' in response '{response_id}'.",
                    param="after",
                )
            items = items[positions[0] + 1 :]
        page = items[: query.limit]
        return _json(
            {
                "object": "list",
                "data": page,
                "first_id": page[0]["id"] if page else "",
                "last_id": page[-1]["id"] if page else "",
                "has_more": len(items) > query.limit,
            }
        )

    return create_response


async def _events(run: ResponseRun) -> AsyncIterator[bytes]:
    async for event in run.events:
        yield b"event: %s\ndata: %s\n\n" % (event["type"].encode(), to_json(event))


def _ends_response(chunk: bytes) -> bool:
    """Whether ``chunk`` ends with the response's last event (completed, incomplete or
    failed: nothing follows any of them)."""
    return chunk[chunk.rfind(b"\nevent: ") + 1 :].startswith(FINAL_EVENTS)


def _json(body: dict[str, Any]) -> Response:
    return Response(to_json(body), media_type="application/json")


def _not_found(response_id: str) -> NotFoundError:
    return NotFoundError(f"Response with id '{response_id}' not found.", param="response_id")
