"""``GET /v1/realtime?model=...`` upgraded to a WebSocket: OpenAI's Realtime API (GA).

The handshake is checked before the upgrade is accepted, and a refusal is an
ordinary HTTP answer in OpenAI's error shape (``server.websockets``: uvicorn offers
ASGI's ``websocket.http.response`` extension), never a socket accepted and then
closed: a refused key is a 401, an unknown model a 404, a missing ``model`` a 400
(a transcription session, ``?intent=transcription``, needs none).
Every answer to the handshake, accepted or not, carries ``x-request-id``.

Who calls is asked of access as for HTTP: ``Authorization: Bearer <key>``, or, for
browsers that can not set headers, the subprotocol ``openai-insecure-api-key.<key>``
(the socket then speaks the subprotocol ``realtime``, which such clients offer too);
a keyless server refuses a foreign ``Host`` or ``Origin`` (``server.hosts``).

Either may carry a client secret (``ek_...``, ``client_secrets_routes``) instead of a
key: while it has not expired, the caller is the key that minted it (the keyless
caller when minted without keys) and ``Host``/``Origin`` are not checked (a backend
allowed this page by minting it). The session is the secret's: its type (``intent``
may only repeat it) and its model (``model`` may be left out, and is refused with a
400 when it names another), and ``session.created`` shows the secret's configuration.
An unknown or expired secret is refused as a wrong key is, with a 401.

Then ``serving.realtime.RealtimeSession`` reads each text frame as one client event.
Each response is admitted and charged as a chat request is (``server.admission``),
with its own request id and ledger row. A session ends after ``SESSION_LIMIT_S``:
an ``error`` event (``session_expired``) and then a close with 1000 (normal), which
the SDK does not retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from omnivox import ids
from omnivox.access.gate import AccessControl, Caller
from omnivox.access.keys import bearer_token, mask_key
from omnivox.engines.base import Engine
from omnivox.errors import (
    AuthenticationError,
    InvalidRequestError,
    InvalidValueError,
    OmnivoxError,
)
from omnivox.server.admission import admitted
from omnivox.server.client_secrets_routes import secret_session
from omnivox.server.hosts import KeylessTrust
from omnivox.server.websockets import refuse_websocket
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.inputs import InputLimits
from omnivox.serving.realtime import SESSION_LIMIT_S, RealtimeSession
from omnivox.serving.realtime.config import SessionType
from omnivox.serving.runs import MeteredRun
from omnivox.store.client_secrets import SECRET_PREFIX, ClientSecret, ClientSecretStore

log = logging.getLogger("omnivox.server")

REALTIME_PATH = "/v1/realtime"
KEY_SUBPROTOCOL = "openai-insecure-api-key."
REALTIME_SUBPROTOCOL = "realtime"
NORMAL_CLOSURE = 1000


class RealtimeEndpoint:
    def __init__(
        self,
        gate: AccessControl,
        keyless: KeylessTrust,
        catalog: ModelCatalog,
        engine: Engine,
        limits: InputLimits,
        secrets: ClientSecretStore,
        session_limit_s: float = SESSION_LIMIT_S,
    ) -> None:
        self.gate = gate
        self.secrets = secrets
        self.keyless = keyless
        self.catalog = catalog
        self.engine = engine
        self.limits = limits
        self.session_limit_s = session_limit_s
        self.sessions: dict[str, RealtimeSession] = {}  # the open ones, by id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_id = ids.request_id()
        headers = Headers(scope=scope)
        offered: list[str] = list(scope.get("subprotocols") or [])
        try:
            caller, secret = await self._authenticate(headers, offered)
        except OmnivoxError as exc:
            await refuse_websocket(scope, receive, send, exc, request_id)
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        model = (query.get("model") or [""])[0]
        intent = (query.get("intent") or [""])[0]
        preset: dict[str, Any] | None = None
        try:
            if intent not in ("", "transcription"):
                raise InvalidRequestError(
                    f"Invalid value: '{intent}'. Supported values are: 'transcription'.",
                    param="intent",
                    code="invalid_value",
                )
            if secret is not None:
                preset = secret.session
                intent, model = self._secret_session(preset, intent, model)
            elif intent == "transcription":
                model = model or self.catalog.model_id
            if not model:
                raise InvalidRequestError(
                    "Missing required parameter: 'model'.",
                    param="model",
                    code="missing_required_parameter",
                )
            self.catalog.get(model, "realtime")
            if preset is not None:  # still served as it was when minted
                secret_session(dict(preset), self.catalog, self.engine, "", 0)
        except OmnivoxError as exc:
            await self.gate.refused(caller, model, "", request_id, exc)
            await refuse_websocket(scope, receive, send, exc, request_id)
            return
        connect = await receive()
        if connect["type"] != "websocket.connect":
            return
        accept: Message = {
            "type": "websocket.accept",
            "headers": [(b"x-request-id", request_id.encode())],
        }
        if REALTIME_SUBPROTOCOL in offered:
            accept["subprotocol"] = REALTIME_SUBPROTOCOL
        await send(accept)
        kind: SessionType = "transcription" if intent == "transcription" else "realtime"
        await self._serve(caller, model, kind, receive, send, preset)

    async def _authenticate(
        self, headers: Headers, offered: list[str]
    ) -> tuple[Caller, ClientSecret | None]:
        authorization = headers.get("authorization")
        if authorization is None:
            keys = [p[len(KEY_SUBPROTOCOL) :] for p in offered if p.startswith(KEY_SUBPROTOCOL)]
            if keys:
                authorization = f"Bearer {keys[0]}"
        token = bearer_token(authorization)
        if token is not None and token.startswith(SECRET_PREFIX):
            secret = await asyncio.to_thread(self.secrets.find, token)
            minter = self.gate.caller_of(secret.owner) if secret is not None else None
            if secret is None or minter is None:  # unknown, expired, or its key revoked
                raise AuthenticationError(
                    f"Incorrect API key provided: {mask_key(token)}. Ask your backend for a "
                    "new client secret.",
                    code="invalid_api_key",
                )
            return minter, secret
        caller = self.gate.authenticate(authorization)
        if caller.key is None:  # trusted for being on loopback: no foreign page may use that
            self.keyless.check(headers.get("host"), headers.get("origin"))
        return caller, None

    def _secret_session(self, preset: dict[str, Any], intent: str, model: str) -> tuple[str, str]:
        """The intent and model of a session a secret opens: the secret's (the query
        may only repeat them)."""
        if preset["type"] == "transcription":
            return "transcription", model or self.catalog.model_id
        if intent == "transcription":
            raise InvalidValueError(
                "This client secret is for a realtime session: connect without "
                "'intent=transcription'.",
                param="intent",
            )
        minted = str(preset["model"])
        if model and model != minted:
            raise InvalidValueError(
                f"This client secret's session is for the model '{minted}', not '{model}'.",
                param="model",
            )
        return "", minted

    async def _serve(
        self,
        caller: Caller,
        model: str,
        kind: SessionType,
        receive: Receive,
        send: Send,
        preset: dict[str, Any] | None = None,
    ) -> None:
        open_socket = {"open": True}
        sending = asyncio.Lock()

        async def send_event(event: dict[str, Any]) -> None:
            async with sending:
                if not open_socket["open"]:
                    return
                try:
                    await send({"type": "websocket.send", "text": json.dumps(event)})
                except OSError:  # the client is gone: what is left to say is dropped
                    open_socket["open"] = False

        async def meter(run: MeteredRun, max_output: int | None) -> None:
            # A key revoked while its session is open (or a keyless session's server
            # given its first key) is refused from the next response on.
            if await asyncio.to_thread(self.gate.caller_of, caller.key_id) is None:
                raise AuthenticationError(
                    "The API key this session was opened with is no longer valid: open a "
                    "new session with a valid key.",
                    code="invalid_api_key",
                )
            snapshot = self.catalog.get(model, "realtime").snapshot
            prompt = run.usage.prompt_text_tokens + run.usage.prompt_audio_tokens
            estimate = prompt if caller.key is not None else 0
            async with admitted(
                self.gate, caller, model, snapshot, max_output, estimate, ids.request_id()
            ) as admission:
                await admission.charge(run)
            if limits := admission.rate_limits():  # a keyed session sees its limits
                await session.send({"type": "rate_limits.updated", "rate_limits": limits})

        session = RealtimeSession(
            self.engine,
            model,
            self.limits,
            send_event,
            meter,
            kind=kind,
            preset=preset,
            peers=self.sessions,
            check_model=lambda name: self.catalog.get(name, "realtime"),
            check_transcription_model=lambda name: self.catalog.get(name, "transcription"),
        )
        try:
            await session.open()
            try:
                async with asyncio.timeout(self.session_limit_s):
                    while True:
                        message = await receive()
                        if message["type"] == "websocket.disconnect":
                            open_socket["open"] = False
                            return
                        text = message.get("text")
                        if text is None:
                            text = (message.get("bytes") or b"").decode("utf-8", "replace")
                        await session.receive(text)
            except TimeoutError:
                await session.close()
                await session.expire()
                async with sending:
                    if open_socket["open"]:
                        open_socket["open"] = False
                        with contextlib.suppress(OSError):
                            await send({"type": "websocket.close", "code": NORMAL_CLOSURE})
        finally:
            await session.close()
