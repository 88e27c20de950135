"""A client that leaves before its answer: stop the work made for it.

A streamed answer notices at its next write; a non-streamed one writes nothing
until the end, so without watching it would run (and be billed ``completed``) for
nobody. ``cancelled_if_client_leaves`` watches the connection while the answer is
made: when the client goes, the request's task is cancelled at once (the engine's
generation with it, billed ``cancelled`` for what was made) and ``ClientDisconnected``
ends the request without a response, which no one is there to read.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.types import Receive


class ClientDisconnected(Exception):
    """The client closed its connection; nothing is sent and nothing is logged as an error."""


@contextlib.asynccontextmanager
async def cancelled_if_client_leaves(receive: Receive) -> AsyncIterator[None]:
    """Run the block; if the client disconnects meanwhile, cancel it and raise
    ``ClientDisconnected``. ``receive`` must have delivered the whole body already."""
    task = asyncio.current_task()
    assert task is not None
    client_left = False

    async def watch() -> None:
        nonlocal client_left
        while (await receive())["type"] != "http.disconnect":
            pass
        client_left = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not client_left:
            raise
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
    if client_left:  # cancelled for it (or it left as the block ended): nothing to answer
        if task.cancelling():
            task.uncancel()
        raise ClientDisconnected
