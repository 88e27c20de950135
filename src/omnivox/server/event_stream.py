"""A streaming response for Server-Sent Events that stops its stream when the client leaves.

Starlette's ``StreamingResponse`` watches for the disconnect through an anyio task
group, which costs more per answer than the rest of the streaming path. Here the
stream runs in the request's own task and one plain asyncio task waits for
``http.disconnect``; when it comes, the request task is cancelled, so the engine's
generation is cancelled with it, exactly as before.

The chunk that ends the stream (for chat ``data: [DONE]``; ``is_last`` tells others
theirs) leaves with the end of the chunked body in one write, not two.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from omnivox.serving.sse import DONE


class EventStreamResponse(StreamingResponse):
    def __init__(
        self,
        content: AsyncIterator[bytes],
        media_type: str,
        on_end: Callable[[], Awaitable[None]] | None = None,
        is_last: Callable[[bytes], bool] = lambda body: body.endswith(DONE),
    ) -> None:
        """``on_end`` is awaited once the response is over, however it ended, shielded
        from cancellation (a stream never started has nothing else to close it).
        ``is_last(chunk)``: nothing follows this chunk (nothing is sent after it)."""
        super().__init__(content, media_type=media_type)
        self._on_end = [on_end] if on_end is not None else []
        self._is_last = is_last

    def also_on_end(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` too once the response is over, after ``on_end``."""

        async def call() -> None:
            callback()

        self._on_end.append(call)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._respond(scope, receive, send)
        finally:
            for on_end in self._on_end:
                await asyncio.shield(on_end())

    async def _respond(self, scope: Scope, receive: Receive, send: Send) -> None:
        request_task = asyncio.current_task()
        assert request_task is not None
        client_left = streamed = False

        async def watch() -> None:
            nonlocal client_left
            while (await receive())["type"] != "http.disconnect":
                pass
            if not streamed:
                client_left = True
                request_task.cancel()

        watcher = asyncio.create_task(watch())
        try:
            await self.stream_response(send)
            streamed = True
        except asyncio.CancelledError:
            if not client_left:
                raise
            request_task.uncancel()  # the client is gone: nothing left to answer
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    async def stream_response(self, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        ended = False
        async for chunk in self.body_iterator:
            body = chunk.encode(self.charset) if isinstance(chunk, str) else bytes(chunk)
            ended = self._is_last(body)  # nothing follows: the body ends with it
            await send({"type": "http.response.body", "body": body, "more_body": not ended})
        if not ended:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
