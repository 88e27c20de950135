"""Blocking work in threads, consumed as an async iterator, with cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from omnivox.engines.worker import ThreadBridge, iterate_in_thread

Work = Callable[[threading.Event], Iterator[int]]


def counting(n: int, delay_s: float = 0.0, started: threading.Event | None = None) -> Work:
    def work(cancel: threading.Event) -> Iterator[int]:
        for i in range(n):
            if cancel.is_set():
                return
            if started is not None:
                started.set()
            time.sleep(delay_s)
            yield i

    return work


async def test_items_arrive_in_order_and_the_stream_ends() -> None:
    assert [i async for i in iterate_in_thread(counting(50))] == list(range(50))


async def test_the_work_runs_off_the_event_loop() -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def work(cancel: threading.Event) -> Iterator[int]:
        seen.append(threading.get_ident())
        yield 1

    assert [i async for i in iterate_in_thread(work)] == [1]
    assert seen and seen[0] != loop_thread


async def test_the_event_loop_stays_free_while_the_work_blocks() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    items = [i async for i in iterate_in_thread(counting(3, delay_s=0.1))]
    task.cancel()
    assert items == [0, 1, 2]
    assert ticks >= 10


async def test_an_exception_in_the_thread_reraises_in_the_consumer() -> None:
    def work(cancel: threading.Event) -> Iterator[int]:
        yield 1
        raise ValueError("model exploded")

    received: list[int] = []
    with pytest.raises(ValueError, match="model exploded"):
        async for item in iterate_in_thread(work):
            received.append(item)
    assert received == [1]


async def test_closing_early_sets_cancel_releases_resources_and_ends_the_thread() -> None:
    released = threading.Event()
    bridge: ThreadBridge[int] = ThreadBridge(name="test-close")

    def work(cancel: threading.Event) -> Iterator[int]:
        try:
            i = 0
            while not cancel.is_set():
                time.sleep(0.01)
                yield i
                i += 1
        finally:
            released.set()

    bridge.spawn(work)
    async with contextlib.aclosing(bridge.items()) as items:
        async for item in items:
            if item == 3:
                break
    assert bridge.cancel.is_set()
    assert released.is_set()
    assert not any(thread.is_alive() for thread in bridge.threads)


async def test_cancelling_the_consumer_task_stops_the_thread() -> None:
    started = threading.Event()
    bridge: ThreadBridge[int] = ThreadBridge(name="test-cancel")
    bridge.spawn(counting(10_000, delay_s=0.01, started=started))

    async def consume() -> None:
        async for _ in bridge:
            pass

    task = asyncio.create_task(consume())
    await asyncio.to_thread(started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadline = time.monotonic() + 1.0
    while any(t.is_alive() for t in bridge.threads) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert not any(thread.is_alive() for thread in bridge.threads)


async def test_items_of_several_producers_merge_and_the_stream_waits_for_all() -> None:
    bridge: ThreadBridge[str] = ThreadBridge(name="test-merge")

    def letters(prefix: str, n: int, delay_s: float) -> Callable[[threading.Event], Iterator[str]]:
        def work(cancel: threading.Event) -> Iterator[str]:
            for i in range(n):
                time.sleep(delay_s)
                yield f"{prefix}{i}"

        return work

    bridge.spawn(letters("a", 5, 0.01))
    bridge.spawn(letters("b", 3, 0.03))
    items = [item async for item in bridge]
    assert sorted(items) == ["a0", "a1", "a2", "a3", "a4", "b0", "b1", "b2"]
    assert [i for i in items if i.startswith("a")] == ["a0", "a1", "a2", "a3", "a4"]
    assert [i for i in items if i.startswith("b")] == ["b0", "b1", "b2"]


async def test_work_that_fails_before_its_first_item_still_ends_the_stream() -> None:
    def work(cancel: threading.Event) -> Iterator[int]:
        raise RuntimeError("no model")

    with pytest.raises(RuntimeError, match="no model"):
        async for _ in iterate_in_thread(work):
            pass
