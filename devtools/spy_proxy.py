"""A spying proxy in front of an upstream chat server, for tests and benchmarks.

``SpyProxy``
sits in front of an upstream on its own loopback port: it records every request body,
can hold a streamed answer before its last chunk until ``release`` is set (so a test
can see what the front does while the upstream has not finished), can stream a
``script`` of its own instead of the upstream's words (an answer of known sentences),
and can be stopped to stand for an upstream that dies.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from devtools.serve import serve_chat_routes


class SpyProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bodies: list[dict[str, Any]] = []
        self.hold = False  # hold streamed answers before their last chunk
        self.release = threading.Event()
        self.finished = 0  # streamed answers delivered to their end
        self.script: list[str] | None = None  # the pieces of text to stream instead
        self.cut = False  # a scripted answer breaks off after its pieces, without an end
        self._served = serve_chat_routes(self._models, self._chat, "spy proxy")
        self.base_url = self._served.base_url

    async def _models(self, request: Request) -> Response:
        async with httpx.AsyncClient() as client:
            answer = await client.get(self.upstream + "/models")
        return JSONResponse(answer.json(), status_code=answer.status_code)

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        self.bodies.append(body)
        if not body.get("stream"):
            async with httpx.AsyncClient(timeout=120) as client:
                answer = await client.post(self.upstream + "/chat/completions", json=body)
            return JSONResponse(answer.json(), status_code=answer.status_code)
        answer = self._scripted(self.script) if self.script else self._relay(body)
        return StreamingResponse(answer, media_type="text/event-stream")

    async def _scripted(self, pieces: list[str]) -> AsyncIterator[bytes]:
        for piece in pieces:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            yield f"data: {json.dumps(chunk)}\n\n".encode()
        if self.cut:
            raise ConnectionAbortedError("the upstream broke off")  # the connection drops
        if self.hold:
            await asyncio.to_thread(self.release.wait)
        end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode()
        self.finished += 1

    async def _relay(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        async with (
            httpx.AsyncClient(timeout=120) as client,
            client.stream("POST", self.upstream + "/chat/completions", json=body) as answer,
        ):
            async for line in answer.aiter_lines():
                if line.startswith("data: [DONE]") and self.hold:
                    await asyncio.to_thread(self.release.wait)
                if line:
                    yield (line + "\n\n").encode()
        self.finished += 1

    def close(self) -> None:
        self.stop()

    def stop(self) -> None:
        self.release.set()
        self._served.stop()
