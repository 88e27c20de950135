"""uvicorn's HTTP protocol (httptools) with limits on a request's head: its size and its time.

uvicorn bounds neither with httptools: a connection that never finishes its headers
(or never sends a byte) stays open for ever, so enough idle connections exhaust the
process's file descriptors, and headers may grow without end. Here every request head
must arrive within ``header_timeout_s`` of the connection opening or of its first
byte (a keep-alive connection waits ``keep_alive_s`` first, as uvicorn does), else 408
and the connection closes; a head (request line and headers) larger than
``max_header_bytes`` is answered 431 and closed. The body's time is bounded above,
in the ASGI middleware, where its size already is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httptools
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from omnivox import ids
from omnivox.settings import Settings

HEAD_LINE_OVERHEAD_BYTES = 4  # ": " and CRLF around each header


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a head past its limit."""


def uvicorn_config(app: ASGIApp, settings: Settings, **overrides: Any) -> uvicorn.Config:
    """How omnivox is served: the guarded protocol, the keep-alive, no access log.

    No access log and no X-Forwarded-* rewriting: omnivox meters callers by key, never
    by address, so neither would change an answer; both would cost every request.
    """
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "proxy_headers": False,
        "http": guarded_protocol(settings.header_timeout_s, settings.max_header_bytes),
        "timeout_keep_alive": settings.keep_alive_s,
    }
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        options |= {"ssl_certfile": settings.tls_certfile, "ssl_keyfile": settings.tls_keyfile}
    return uvicorn.Config(app, **(options | overrides))


def guarded_protocol(header_timeout_s: float, max_header_bytes: int) -> type[HttpToolsProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with these limits."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"header_timeout_s": header_timeout_s, "max_header_bytes": max_header_bytes},
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout_s: float  # set by ``guarded_protocol``
    max_header_bytes: int

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0  # received since the head began (an upper bound of its size)
        self._head_counted = 0  # of its lines handed over whole by the parser (exact)
        self._head_timer: asyncio.TimerHandle | None = None
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's own, with the head's size checked twice: exactly, in the parser's
        # callbacks, for the lines it hands over; and in the bytes received while the head
        # is unfinished, since httptools buffers a line that never ends for ever.
        self._unset_keepalive_if_required()
        if self._head_timer is None:  # between heads: a new one may begin in this data
            self._head_bytes = 0
        self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, HeadTooLarge):
                self._refuse(431, "request_header_fields_too_large", self._too_large_message())
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserError:
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        # Still within a head: every byte since it began is the head's (a pipelined head
        # that began in this data after a body is counted with that body's tail).
        if self._head_timer is not None and self._head_bytes > self.max_header_bytes:
            self._refuse(431, "request_header_fields_too_large", self._too_large_message())

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_counted = 0
        if self._head_timer is None:  # a keep-alive connection's next request
            self._start_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + HEAD_LINE_OVERHEAD_BYTES)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._stop_head_timer()
        super().on_headers_complete()

    def _count(self, n_bytes: int) -> None:
        self._head_counted += n_bytes
        if self._head_counted > self.max_header_bytes:
            raise HeadTooLarge  # stops the parser; ``data_received`` answers 431

    def _start_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        self._refuse(
            408,
            "request_timeout",
            f"The request's headers did not arrive within {self.header_timeout_s:g} s.",
        )

    def _too_large_message(self) -> str:
        return (
            f"The request line and headers are larger than {self.max_header_bytes} bytes, "
            "which this server does not accept."
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """An OpenAI-shaped error written straight to the socket, then the connection closed."""
        self._stop_head_timer()
        body = json.dumps(
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": None,
                    "code": code,
                }
            }
        ).encode()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        head: list[Any] = [
            b"HTTP/1.1 %d %s\r\n" % (status, reason),
            b"content-type: application/json\r\n",
            b"content-length: %d\r\n" % len(body),
            b"x-request-id: " + ids.request_id().encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        self.transport.close()


def raise_open_files_limit() -> None:
    """Lift the soft limit on open files to the hard one: each connection holds one."""
    try:
        import resource
    except ImportError:  # not on this platform
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
