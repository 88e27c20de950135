"""``sse.coalesce``: what is ready leaves together, nothing waits, closing cleans up; the
event stream ends its body with its last chunk."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from omnivox.serving.sse import coalesce


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in coalesce(chunks)]


def test_chunks_ready_together_leave_in_one_write() -> None:
    async def producer() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b", b"c"):
            yield chunk

    assert asyncio.run(collect(producer())) == [b"abc"]


def test_a_producer_that_waits_never_holds_back_what_is_ready() -> None:
    async def scenario() -> list[bytes]:
        gate = asyncio.Event()
        seen: list[bytes] = []

        async def producer() -> AsyncIterator[bytes]:
            yield b"a"
            yield b"b"
            await gate.wait()  # only opened once "ab" has been written
            yield b"c"
            await asyncio.sleep(0)
            yield b"d"

        async for chunk in coalesce(producer()):
            seen.append(chunk)
            gate.set()
        return seen

    assert asyncio.run(scenario()) == [b"ab", b"c", b"d"]


def test_the_producer_runs_in_the_consumers_task_and_its_values_pass_through() -> None:
    async def scenario() -> list[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        async def producer() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield await queue.get()

        async def feed() -> None:
            for chunk in (b"x", b"y", b"z"):
                await asyncio.sleep(0.01)
                queue.put_nowait(chunk)

        feeder = asyncio.create_task(feed())
        out = await collect(producer())
        await feeder
        return out

    assert asyncio.run(scenario()) == [b"x", b"y", b"z"]


def test_cancelling_the_consumer_cancels_the_waiting_producer() -> None:
    cleaned: list[str] = []

    async def producer() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()  # forever
            yield b"never"
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0)  # cleanup may await
            cleaned.append("finally")

    async def scenario() -> None:
        out = coalesce(producer())
        assert await anext(out) == b"a"
        task = asyncio.ensure_future(anext(out))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await out.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert cleaned == ["cancelled", "finally"]


def test_closing_while_the_producer_waits_cancels_it_and_runs_its_cleanup() -> None:
    cleaned: list[str] = []

    async def producer() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await asyncio.Event().wait()  # forever: "a" leaves while this waits
        except asyncio.CancelledError:
            cleaned.append("cancelled")
            raise
        finally:
            await asyncio.sleep(0)
            cleaned.append("finally")

    async def scenario() -> None:
        out = coalesce(producer())
        assert await anext(out) == b"a"
        await out.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())
    assert cleaned == ["cancelled", "finally"]


def test_a_producers_error_reaches_the_consumer() -> None:
    async def producer() -> AsyncIterator[bytes]:
        yield b"a"
        await asyncio.sleep(0)
        raise ValueError("broken")

    async def scenario() -> list[bytes]:
        seen = []
        with pytest.raises(ValueError, match="broken"):
            async for chunk in coalesce(producer()):
                seen.append(chunk)
        return seen

    assert asyncio.run(scenario()) == [b"a"]


@pytest.mark.parametrize(
    ("chunks", "bodies"),
    [
        # [DONE] ends the body in its own message: one write with the chunked terminator
        ([b"data: {}\n\n", b"data: {}\n\ndata: [DONE]\n\n"], [True, False]),
        # an error event ends a stream without [DONE]: an empty last message ends the body
        ([b"data: {}\n\n", b'data: {"error": {}}\n\n'], [True, True, False]),
    ],
)
def test_the_last_chunk_of_a_stream_ends_the_body_itself(
    chunks: list[bytes], bodies: list[bool]
) -> None:
    from omnivox.server.event_stream import EventStreamResponse

    async def scenario() -> list[dict[str, object]]:
        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        sent: list[dict[str, object]] = []

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        async def receive() -> dict[str, object]:
            await asyncio.Event().wait()  # the client stays
            return {}

        response = EventStreamResponse(body(), media_type="text/event-stream")
        await response({"type": "http"}, receive, send)  # type: ignore[arg-type]
        return sent

    sent = asyncio.run(scenario())
    assert sent[0]["type"] == "http.response.start"
    assert [m["more_body"] for m in sent[1:]] == bodies
    assert b"".join(m["body"] for m in sent[1:]) == b"".join(chunks)  # type: ignore[misc]
