"""The HTTP face: an app factory that receives its collaborators.

``create_app(settings, engine, store, access=...)`` wires routes, the OpenAI
error shape for every failure (invalid JSON, validation, unknown routes,
internal errors), and the headers middleware. HTTP only: requests are parsed
into protocol models and handed to ``serving``; nothing here knows about models
or audio.

``POST /v1/chat/completions`` and ``POST /v1/responses`` are the routes on the hot
path: they are answered by a thin ASGI dispatcher in front of FastAPI (the headers
middleware around the handler, nothing else): FastAPI's and Starlette's own layers
(error and exception middlewares, body limit, exit stack, routing) would only add
work that these routes do not need to every request. A handler raises only ``OmnivoxError``
for the client; the headers middleware turns it, or anything unexpected, into
OpenAI's error shape, as FastAPI's handlers do for every other route. The
same handler stays registered in FastAPI too, so a path the dispatcher does not
match exactly (a trailing slash, which FastAPI redirects; an app mounted under
a prefix) is still answered, through the longer way. ``create_app`` therefore
returns the dispatcher; the FastAPI app is its ``api``.

``access`` (keys, rate limits, the usage ledger) is asked in the order its
docstring gives; without one every request is served unmetered. ``GET /metrics``
shows the app's own Prometheus registry (``metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import PurePath

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from omnivox import ids
from omnivox.access.gate import AccessControl, Caller, OpenAccess
from omnivox.access.ledger import parse_since_s
from omnivox.access.tiers import model_class
from omnivox.engines.base import Engine
from omnivox.errors import InvalidRequestError, OmnivoxError, UnknownURLError
from omnivox.metrics import subscribed
from omnivox.protocol.requests import CreateChatCompletionRequest
from omnivox.protocol.responses import Model, ModelList
from omnivox.server.admission import admitted, close_run, refused_before_admission
from omnivox.server.audio_routes import add_audio_routes
from omnivox.server.batch_routes import (
    BATCH_USES,
    BatchLines,
    InteractiveLoad,
    add_batch_routes,
    batch_store_path,
)
from omnivox.server.bodies import read_request
from omnivox.server.client_secrets_routes import add_client_secret_routes
from omnivox.server.cors import cors
from omnivox.server.disconnect import cancelled_if_client_leaves
from omnivox.server.event_stream import EventStreamResponse
from omnivox.server.files_routes import add_file_routes
from omnivox.server.hosts import KeylessTrust, is_loopback_name
from omnivox.server.metrics import MEDIA_TYPE as METRICS_MEDIA_TYPE
from omnivox.server.metrics import ServerMetrics
from omnivox.server.middleware import OpenAIHeadersMiddleware
from omnivox.server.openapi import CHAT_PATH, RESPONSES_PATH, describe_routes
from omnivox.server.playground import add_playground_routes
from omnivox.server.realtime_route import REALTIME_PATH, RealtimeEndpoint
from omnivox.server.responses_routes import add_responses_routes
from omnivox.server.websockets import refuse_websocket
from omnivox.serving import fold, sse
from omnivox.serving.batches import BatchService
from omnivox.serving.catalog import OWNER, ModelCatalog, served_uses
from omnivox.serving.chat import ChatService, ServiceOptions
from omnivox.serving.inputs import InputLimits, output_token_limit
from omnivox.serving.responses_api import ResponsesService
from omnivox.serving.speech import SpeechService
from omnivox.serving.transcription import TranscriptionService
from omnivox.serving.usage import estimate_prompt_tokens
from omnivox.settings import Settings
from omnivox.store.audio import AudioStore
from omnivox.store.batches import BatchStore
from omnivox.store.client_secrets import ClientSecretStore
from omnivox.store.files import FileStore
from omnivox.store.responses import ResponseStore

log = logging.getLogger("omnivox.server")


def json_response(body: str, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type="application/json")


def error_response(exc: OmnivoxError) -> Response:
    response = json_response(json.dumps(exc.body()), exc.status)
    response.headers.update(exc.headers)
    return response


def create_app(
    settings: Settings,
    engine: Engine,
    store: AudioStore,
    *,
    access: AccessControl | None = None,
    start_engine: bool = True,
) -> OmnivoxApp:
    """The app; with ``start_engine`` its lifespan loads the engine's models first."""
    gate: AccessControl = access if access is not None else OpenAccess()
    catalog = ModelCatalog(
        settings.model_id,
        settings.model_snapshot_date,
        settings.openai_aliases,
        served_uses(engine),
    )
    limits = InputLimits(settings.max_input_audio_s)
    service = ChatService(
        engine,
        store,
        catalog,
        ServiceOptions(settings.audio_ttl_s, limits),
        system_fingerprint=ids.system_fingerprint(engine.name, *engine.model_names()),
    )
    metrics = ServerMetrics((entry.model_id for entry in catalog.entries()), engine)
    state: dict[str, bool] = {"ready": False}
    keyless = KeylessTrust(settings.allowed_hosts, settings.cors_origins)
    files = FileStore(settings.data_dir)
    responses_store = ResponseStore(settings.data_dir)
    client_secrets = ClientSecretStore(settings.data_dir)
    speaker = SpeechService(engine, catalog)
    transcriber = TranscriptionService(engine, catalog, limits)
    responder = ResponsesService(service, responses_store, settings.response_ttl_s)
    load = InteractiveLoad()  # batch lines run only while it is idle
    batches = BatchService(
        BatchStore(batch_store_path(settings.data_dir)),
        files,
        BatchLines(gate, catalog, service, speaker, transcriber, responder).run,
        load.wait_idle,
        known_model=lambda name, endpoint: catalog.has(name, BATCH_USES[endpoint]),
        queue=lambda owner, model: (model_class(model), gate.batch_queue_limit(owner, model)),
        concurrency=settings.batch_concurrency,
    )

    def authenticate(request: Request) -> Caller:
        caller = gate.authenticate(request.headers.get("authorization"))
        if caller.key is None:  # trusted for being on loopback: no foreign page may use that
            keyless.check(request.headers.get("host"), request.headers.get("origin"))
        return caller

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with subscribed(metrics):  # the upstream calls the engine reports, from its start
            if start_engine:
                await engine.start()
            await gate.start()  # rows an earlier process left open are closed before new ones
            state["ready"] = True
            runner = asyncio.create_task(batches.run())  # unfinished batches resume
            try:
                yield
            finally:
                state["ready"] = False
                runner.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await runner
                await engine.close()
                store.close()
                files.close()
                responses_store.close()
                client_secrets.close()
                batches.store.close()
                await gate.close()

    app = FastAPI(
        # omnivox reports through its ledger and logs; FastAPI's OpenTelemetry hooks
        # would otherwise look for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="omnivox",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
        redirect_slashes=False,  # OmnivoxApp serves a trailing slash as the path without it
    )
    app.state.service = service
    _add_error_handlers(app)

    async def chat_completions(request: Request) -> Response:
        """An interactive request: batch lines wait until it has been answered."""
        return await load.serve(answer_chat, request)

    async def answer_chat(request: Request) -> Response:
        caller = authenticate(request)
        request_id = request.state.request_id
        async with refused_before_admission(
            gate, caller, request_id, lambda: _requested_model(request), catalog.find_snapshot
        ):
            req = await read_request(
                request, CreateChatCompletionRequest, strict=settings.strict_parameters
            )
            snapshot = catalog.get(req.model).snapshot
            max_output = output_token_limit(req)[0]
        estimate = estimate_prompt_tokens(req) if caller.key is not None else 0
        async with admitted(
            gate, caller, req.model, snapshot, max_output, estimate, request_id
        ) as admission:
            run = await service.start(req)
            await admission.charge(run)
            response: Response
            if req.streaming:
                run.events = metrics.timed_outputs(run.events, request.state.started_ns)

                async def stream_ended() -> None:
                    await close_run(run, run.events)

                response = EventStreamResponse(
                    sse.render(run), media_type=sse.SSE_MEDIA_TYPE, on_end=stream_ended
                )
            else:
                async with cancelled_if_client_leaves(request.receive):
                    completion = await fold.fold(run, want_logprobs=bool(req.logprobs))
                response = json_response(completion.dump())
        response.headers.update(admission.headers)
        return response

    add_audio_routes(app, authenticate, gate, catalog, speaker, transcriber)

    add_file_routes(app, authenticate, files)
    add_playground_routes(app)
    add_batch_routes(app, authenticate, batches)
    add_client_secret_routes(app, authenticate, catalog, engine, client_secrets)
    create_response = add_responses_routes(
        app,
        authenticate,
        gate,
        catalog,
        responder,
        load,
        strict_parameters=settings.strict_parameters,
    )

    @app.get("/v1/usage")
    async def usage(request: Request, since: str | None = None) -> Response:
        caller = authenticate(request)
        summary = await gate.usage(caller, _since_s(since))
        return json_response(json.dumps(summary.to_json()))

    @app.get("/v1/models")
    async def list_models(request: Request) -> Response:
        authenticate(request)
        models = [
            Model(id=e.model_id, created=e.created, owned_by=OWNER) for e in catalog.entries()
        ]
        return json_response(ModelList(data=models).dump())

    @app.get("/v1/models/{model_id:path}")
    async def retrieve_model(request: Request, model_id: str) -> Response:
        authenticate(request)
        entry = catalog.get(model_id)
        return json_response(Model(id=entry.model_id, created=entry.created, owned_by=OWNER).dump())

    @app.get("/health")
    async def health() -> Response:
        status = 200 if state["ready"] else 503
        body = {
            "status": "ok" if state["ready"] else "starting",
            "engine": engine.name,
            # names, not where they lie: /health answers without a key
            "models": [PurePath(name).name or name for name in engine.model_names()],
            "model": catalog.snapshot,
        }
        # Parts served by other servers, none of which answers now (requests for them: 503).
        unavailable = getattr(engine, "unavailable_parts", None)
        if state["ready"] and unavailable is not None and (parts := unavailable()):
            body["unavailable"] = list(parts)
        return json_response(json.dumps(body), status)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus_metrics(request: Request) -> Response:
        """Without a key only from loopback (a scraper on this host), or on a server
        without keys; either way, never to a foreign page (``hosts``)."""
        client = request.client
        if "authorization" not in request.headers and (
            client is not None and is_loopback_name(client.host)
        ):
            keyless.check(request.headers.get("host"), request.headers.get("origin"))
        else:
            authenticate(request)
        return Response(metrics.render(), media_type=METRICS_MEDIA_TYPE)

    app.router.add_route(CHAT_PATH, chat_completions, methods=["POST"], include_in_schema=False)
    describe_routes(app)
    metrics.add_routes(path for route in app.routes if (path := getattr(route, "path", None)))
    app.add_middleware(
        OpenAIHeadersMiddleware,
        max_body_bytes=settings.max_body_bytes,
        body_timeout_s=settings.body_timeout_s,
        metrics=metrics,
    )
    realtime = RealtimeEndpoint(gate, keyless, catalog, engine, limits, client_secrets)
    fast_routes = {CHAT_PATH: chat_completions, RESPONSES_PATH: create_response}
    return OmnivoxApp(app, fast_routes, settings, metrics, realtime=realtime)


class OmnivoxApp:
    """``POST /v1/chat/completions`` and ``POST /v1/responses`` straight to their
    handlers (``fast_routes``); everything else to FastAPI.

    With ``cors_origins`` set, Starlette's CORS middleware sits in front of both:
    preflights are answered and allowed origins can read answers and OpenAI's
    headers. ``/v1/realtime`` upgrades to OpenAI's Realtime API (``realtime_route``);
    an upgrade anywhere else is refused with 404 in OpenAI's shape, ``x-request-id``
    included, rather than a bare 403. A path with a trailing slash is served as the
    same path without it.
    """

    def __init__(
        self,
        api: FastAPI,
        fast_routes: dict[str, Callable[[Request], Awaitable[Response]]],
        settings: Settings,
        metrics: ServerMetrics | None = None,
        *,
        realtime: ASGIApp | None = None,
    ) -> None:
        self.api = api
        self.metrics = metrics
        self._realtime = realtime
        self._fast: dict[str, ASGIApp] = {
            path: OpenAIHeadersMiddleware(
                _served_by(handler), settings.max_body_bytes, settings.body_timeout_s, metrics
            )
            for path, handler in fast_routes.items()
        }
        self._entry: ASGIApp = self._dispatch
        if settings.cors_origins:
            self._entry = cors(self._dispatch, settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if len(path) > 1 and path.endswith("/"):
            # ``/v1/files/`` is served as ``/v1/files``, with every check of that route,
            # rather than redirected (a redirect answers before the route's checks).
            raw_path = scope.get("raw_path")
            scope = {
                **scope,
                "path": path[:-1],
                "raw_path": raw_path[:-1] if raw_path and raw_path.endswith(b"/") else raw_path,
            }
        await self._entry(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self._fast:
            await self._fast[scope["path"]](scope, receive, send)
        elif scope["type"] == "websocket":
            if scope["path"] == REALTIME_PATH and self._realtime is not None:
                await self._realtime(scope, receive, send)
                return
            await refuse_websocket(scope, receive, send, unknown_url("WEBSOCKET", scope["path"]))
        else:
            await self.api(scope, receive, send)


def _served_by(handler: Callable[[Request], Awaitable[Response]]) -> ASGIApp:
    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        response = await handler(Request(scope, receive, send))
        await response(scope, receive, send)

    return serve


def _requested_model(request: Request) -> str:
    """The model a body named, once it was read ("" when it named none)."""
    return getattr(request.state, "model", "")


def _since_s(since: str | None) -> float | None:
    if since is None:
        return None
    try:
        since_s = parse_since_s(since)
    except (ValueError, OverflowError) as exc:
        raise InvalidRequestError(str(exc), param="since", code="invalid_value") from None
    if not math.isfinite(since_s):
        raise InvalidRequestError(
            f"Invalid 'since': {since!r}. Use unix seconds, an ISO 8601 date or time, or an "
            "age such as 24h or 7d.",
            param="since",
            code="invalid_value",
        )
    return since_s


def unknown_url(method: str, path: str) -> UnknownURLError:
    return UnknownURLError(
        f"Unknown request URL: {method} {path}. Please check the URL for typos, or see the "
        "docs at https://platform.openai.com/docs/api-reference/.",
    )


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(OmnivoxError)
    async def omnivox_error(request: Request, exc: OmnivoxError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code in (404, 405):
            return error_response(unknown_url(request.method, request.url.path))
        return error_response(InvalidRequestError(str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(InvalidRequestError("Invalid request."))
