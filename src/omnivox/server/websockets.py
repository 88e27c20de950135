"""WebSocket upgrades that no route takes: refused over HTTP, in OpenAI's error shape.

An ASGI app that closes a WebSocket before accepting it leaves the server to answer a
bare 403 with no body and none of our headers. Where the server offers ASGI's
``websocket.http.response`` extension (uvicorn does), the refusal is an ordinary HTTP
answer instead: the error's status, its JSON body and ``x-request-id``.
"""

from __future__ import annotations

import json

from starlette.types import Receive, Scope, Send

from omnivox import ids
from omnivox.errors import OmnivoxError

WEBSOCKET_POLICY_VIOLATION = 1008


async def refuse_websocket(
    scope: Scope, receive: Receive, send: Send, exc: OmnivoxError, request_id: str | None = None
) -> None:
    await receive()  # websocket.connect
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
        return
    body = json.dumps(exc.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", (request_id or ids.request_id()).encode()),
        *((k.lower().encode(), v.encode()) for k, v in exc.headers.items()),
    ]
    await send({"type": "websocket.http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
