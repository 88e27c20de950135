"""``POST /v1/realtime/client_secrets``: OpenAI's ephemeral keys for the Realtime API.

A backend that holds a key (or runs beside a server without keys) mints a secret,
``ek_`` and 32 hex digits, and hands it to a browser, which opens ``/v1/realtime``
with it (``realtime_route``) as the minting key's caller, never seeing that key.
The request is authenticated as every route is (keys, the keyless ``Host``/``Origin``
check); it is not a model request, so it is neither rate limited nor in the ledger.

The body's ``session`` is checked exactly as a ``session.update``'s (the same protocol
models, what this server serves, a realtime ``model`` served for realtime: by default
the server's own model, as a transcription session's is), and the answer carries the
session object that ``session.created`` will show: every session the secret opens
has its own ``id`` and ``expires_at`` (``SESSION_LIMIT_S`` after it opens), so the
minted object shows ``expires_at: 0``, as OpenAI's does. The secret opens sessions
until ``expires_after.seconds`` (default 600) have passed; only its hash is kept
(``store.client_secrets``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from omnivox.access.gate import Caller
from omnivox.engines.base import Engine
from omnivox.ids import new_id
from omnivox.protocol import realtime as wire
from omnivox.server.bodies import read_json_object, validated
from omnivox.server.openapi import CLIENT_SECRETS_PATH
from omnivox.serving.catalog import ModelCatalog
from omnivox.serving.realtime.config import checked_model, configured
from omnivox.store.client_secrets import ClientSecretStore


def secret_session(
    preset: dict[str, Any], catalog: ModelCatalog, engine: Engine, session_id: str, expires_at: int
) -> dict[str, Any]:
    """The session object a secret's ``preset`` gives (a realtime preset without a
    ``model`` is given the server's own), refused as a ``session.update`` would be."""
    if preset["type"] == "realtime":
        if preset.get("model") is None:
            preset["model"] = catalog.model_id
        checked_model(lambda name: catalog.get(name, "realtime"), preset["model"], "session.model")
        model = preset["model"]
    else:
        model = catalog.model_id
    return configured(
        preset,
        session_id=session_id,
        model=model,
        expires_at=expires_at,
        engine=engine,
        check_transcription_model=lambda name: catalog.get(name, "transcription"),
    )


def add_client_secret_routes(
    app: FastAPI,
    authenticate: Callable[[Request], Caller],
    catalog: ModelCatalog,
    engine: Engine,
    store: ClientSecretStore,
) -> None:
    @app.post(CLIENT_SECRETS_PATH)
    async def create_client_secret(request: Request) -> Response:
        caller = authenticate(request)
        _, data = await read_json_object(request)
        req = validated(wire.ClientSecretCreateRequest, data)
        ttl_s = (req.expires_after or wire.ExpiresAfter()).seconds
        preset: dict[str, Any] = {"type": "realtime"}
        if req.session is not None:
            preset = req.session.model_dump(exclude_unset=True, mode="json")
        session = secret_session(preset, catalog, engine, new_id("sess_", 24), 0)
        expires_at = store.now_s() + ttl_s
        value = await asyncio.to_thread(store.mint, caller.key_id, preset, expires_at)
        body = {"value": value, "expires_at": expires_at, "session": session}
        return Response(json.dumps(body), media_type="application/json")
