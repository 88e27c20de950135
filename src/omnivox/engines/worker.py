"""Run blocking model work in worker threads and consume it as an async iterator.

A ``ThreadBridge`` starts one or more producer threads. Each producer is a
function ``work(cancel) -> Iterable[T]``: it runs in its own thread, yields
items, and checks ``cancel`` (a ``threading.Event``) between units of work (a
token, a sentence). Items from every producer arrive at the consumer in the
order the producers made them; the stream ends when every producer is done.

The consumer iterates ``bridge`` with ``async for``. When it stops early (the
client went away, the task was cancelled, or it calls ``aclose()``), the
cancel event is set and the threads are joined, so their resources (a model
lease, a file) are released in the producers' own ``finally`` blocks. An
exception raised in a producer re-raises in the consumer, and cancels the rest.

A ``ModelThread`` is the other direction: one thread that runs every call
handed to it, from whichever thread, for a library that must always compute
from the same thread.

This module knows nothing of models, audio or events; it only moves work and
items between threads and the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

JOIN_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class _Done:
    """A producer finished (``error`` set when it raised)."""

    error: BaseException | None = None


Work = Callable[[threading.Event], Iterable[T]]


class ThreadBridge(Generic[T]):
    """Items of producer threads as one async iterator, with cooperative cancellation."""

    def __init__(self, *, name: str = "omnivox-worker") -> None:
        self.cancel = threading.Event()
        self._name = name
        self._threads: list[threading.Thread] = []
        self._queue: asyncio.Queue[T | _Done] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running = 0
        self._closed = False

    def spawn(self, work: Work[T], *, name: str | None = None) -> None:
        """Start ``work(cancel)`` in a new thread; call from the event loop's thread."""
        if self._closed:
            raise RuntimeError("this bridge is closed")
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
        thread_name = f"{self._name}-{name}" if name else self._name
        thread = threading.Thread(target=self._run, args=(work,), name=thread_name, daemon=True)
        self._threads.append(thread)
        self._running += 1
        thread.start()

    @property
    def threads(self) -> tuple[threading.Thread, ...]:
        return tuple(self._threads)

    def _post(self, item: T | _Done) -> bool:
        """Hand ``item`` to the consumer; False when the event loop is gone."""
        assert self._loop is not None and self._queue is not None  # set by spawn()
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the loop is closed: nobody will read any more
            self.cancel.set()
            return False
        return True

    def _run(self, work: Work[T]) -> None:
        error: BaseException | None = None
        items: Iterator[T] | None = None
        try:
            items = iter(work(self.cancel))
            for item in items:
                if self.cancel.is_set() or not self._post(item):
                    break
        except BaseException as exc:  # re-raised in the consumer
            error = exc
        finally:
            # Close a generator here, in its own thread, so that its ``finally``
            # blocks (a model lease, a file) run now rather than at garbage collection.
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
            self._post(_Done(error))

    def __aiter__(self) -> AsyncIterator[T]:
        return self.items()

    async def items(self) -> AsyncGenerator[T, None]:
        try:
            while self._running > 0:
                assert self._queue is not None  # set by spawn()
                item = await self._queue.get()
                if isinstance(item, _Done):
                    self._running -= 1
                    if item.error is not None:
                        raise item.error
                    continue
                yield item
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Cancel the producers and wait (off the event loop) for their threads to end."""
        self._closed = True
        self.cancel.set()
        alive = [t for t in self._threads if t.is_alive()]
        if alive:
            # Shielded: even when our task is being cancelled, the join goes on in
            # the background; the producers have seen ``cancel`` and end by themselves.
            join = asyncio.ensure_future(asyncio.to_thread(_join_all, alive, JOIN_TIMEOUT_S))
            await asyncio.shield(join)


def _join_all(threads: Iterable[threading.Thread], timeout_s: float) -> None:
    for thread in threads:
        thread.join(timeout_s)


async def iterate_in_thread(work: Work[T], *, name: str = "omnivox-worker") -> AsyncIterator[T]:
    """Convenience: the items of one blocking ``work(cancel)`` as an async iterator."""
    bridge: ThreadBridge[T] = ThreadBridge(name=name)
    bridge.spawn(work)
    async with contextlib.aclosing(bridge.items()) as items:
        async for item in items:
            yield item


class ModelThread:
    """One thread that runs every call given to ``run``, one at a time."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the thread; its result, or its exception raised here."""
        return self._pool.submit(work, *args).result()

    def steps(self, items: Iterator[T]) -> Generator[T, None, None]:
        """``items``, each ``next()`` and the final ``close()`` run on the thread."""
        end: Any = object()
        try:
            while (item := self.run(next, items, end)) is not end:
                yield item
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                self.run(close)

    def close(self) -> None:
        self._pool.shutdown(wait=False)
