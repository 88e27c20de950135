"""ASGI middleware: OpenAI's response headers, the body's cap and time, the last-resort 500.

Pure ASGI (no ``BaseHTTPMiddleware``) so that streaming passes through untouched
and the per-request cost stays in microseconds. Every response, errors
included, carries ``x-request-id`` and ``openai-processing-ms`` (time until the
response started, which for a stream is its first byte). A body must arrive
without a pause longer than ``body_timeout_s`` (408 after); an answer sent
before its request's body was read closes the connection. An upload to a path of
``UPLOAD_BODY_LIMITS`` may be as large as that path's own cap where it is above
``max_body_bytes``. A client that left (``ClientDisconnected``) gets nothing and is
logged at debug level only: leaving is the client's right, not the server's error.
With ``metrics``, every request is counted and timed there once its answer is over
(``server/metrics.py``), and a response sent without a length counts as a stream
while it is sent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from omnivox import ids
from omnivox.errors import OmnivoxError, RequestTimeoutError, RequestTooLargeError, ServerError
from omnivox.server.disconnect import ClientDisconnected
from omnivox.server.files_routes import MAX_FILE_BYTES, MAX_UPLOAD_BODY_BYTES
from omnivox.server.metrics import ServerMetrics
from omnivox.server.openapi import FILES_PATH

log = logging.getLogger("omnivox.server")

OPENAI_VERSION = b"2020-10-01"
TOO_LARGE_ADVICE = "Send shorter audio or raise the server's --max-body-bytes."
# path -> the largest body an upload there may have, and what to say past it
UPLOAD_BODY_LIMITS: Mapping[str, tuple[int, str]] = {
    FILES_PATH: (MAX_UPLOAD_BODY_BYTES, f"A file may be at most {MAX_FILE_BYTES} bytes."),
}


def too_large(max_body_bytes: int, advice: str = TOO_LARGE_ADVICE) -> RequestTooLargeError:
    return RequestTooLargeError(
        f"Request body too large: the limit is {max_body_bytes} bytes. {advice}",
        param=None,
    )


class OpenAIHeadersMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int,
        body_timeout_s: float,
        metrics: ServerMetrics | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s
        self.metrics = metrics
        self.upload_limits = {
            path: (n_bytes, advice)
            for path, (n_bytes, advice) in UPLOAD_BODY_LIMITS.items()
            if n_bytes > max_body_bytes
        }
        self._default_limit = (max_body_bytes, TOO_LARGE_ADVICE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_ns = time.perf_counter_ns()
        request_id = ids.request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["started_ns"] = started_ns
        status = 0  # the answer's, once it has started
        streamed = False
        metrics = self.metrics
        max_body_bytes, advice = self.upload_limits.get(scope["path"], self._default_limit)
        guarded = _GuardedReceive(receive, max_body_bytes, self.body_timeout_s, advice)
        has_body = _has_body(scope)

        async def send_with_headers(message: Message) -> None:
            nonlocal status, streamed
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed_ms = (time.perf_counter_ns() - started_ns) // 1_000_000
                headers = list(message.get("headers", []))
                if metrics is not None and not _has_length(headers):
                    streamed = True
                    metrics.active_streams.inc()
                headers += [
                    (b"x-request-id", request_id.encode()),
                    (b"openai-processing-ms", str(elapsed_ms).encode()),
                    (b"openai-version", OPENAI_VERSION),
                ]
                if has_body and not guarded.body_done:
                    # Answered before its body was read (401, 413, 415...): uvicorn would
                    # keep reading and discarding it, each trickled byte keeping the
                    # connection alive. Closing it ends that.
                    headers.append((b"connection", b"close"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            declared = _content_length(scope)
            if declared is not None and declared > max_body_bytes:
                await _send_error(send_with_headers, too_large(max_body_bytes, advice))
                return
            try:
                await self.app(scope, guarded, send_with_headers)
            except ClientDisconnected:
                log.debug("request %s: the client left before its answer", request_id)
            except Exception as exc:
                if status:  # the answer has started: too late for another
                    raise
                if isinstance(exc, OmnivoxError):
                    await _send_error(send_with_headers, exc)
                    return
                log.exception("unhandled error in request %s", request_id)
                await _send_error(send_with_headers, ServerError())
        finally:
            if metrics is not None:
                if streamed:
                    metrics.active_streams.dec()
                metrics.request_done(scope, status, (time.perf_counter_ns() - started_ns) / 1e9)


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, _ in headers:  # noqa: SIM110 (a quarter of any()'s time over a generator)
        if name == b"content-length":
            return True
    return False


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"transfer-encoding" or (name == b"content-length" and value != b"0"):
            return True
    return False


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _GuardedReceive:
    """A receive that fails as soon as a chunked body passes the cap, or stalls.

    Each read of the body must bring its next part within ``body_timeout_s`` (a slow
    link that keeps sending is never cut; a body that stops is, 408). Once the body is
    whole, reads (which then wait for the client to disconnect) are not timed.
    """

    def __init__(
        self, receive: Receive, max_body_bytes: int, body_timeout_s: float, advice: str
    ) -> None:
        self._receive = receive
        self._max_body_bytes = max_body_bytes
        self._body_timeout_s = body_timeout_s
        self._advice = advice
        self._n_bytes = 0
        self.body_done = False

    async def __call__(self) -> Message:
        if self.body_done:
            return await self._receive()
        try:
            async with asyncio.timeout(self._body_timeout_s):
                message = await self._receive()
        except TimeoutError:
            raise RequestTimeoutError(
                f"The request body stopped arriving: nothing came for {self._body_timeout_s:g} s."
            ) from None
        if message["type"] != "http.request" or not message.get("more_body", False):
            self.body_done = True
        if message["type"] == "http.request":
            self._n_bytes += len(message.get("body", b""))
            if self._n_bytes > self._max_body_bytes:
                raise too_large(self._max_body_bytes, self._advice)
        return message


async def _send_error(send: Send, exc: OmnivoxError) -> None:
    body = json.dumps(exc.body()).encode()
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in exc.headers.items()]
    start: dict[str, Any] = {
        "type": "http.response.start",
        "status": exc.status,
        "headers": headers,
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})
