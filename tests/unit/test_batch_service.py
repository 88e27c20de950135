"""``BatchService`` on its own stores, with a line runner and a clock of the test's: a
batch whose window passed while no server ran expires when one starts, keeping the
lines answered, and so does one whose window passes while it runs; a batch resumed by
a new service never runs a recorded line again; ``concurrency`` lines run at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from omnivox.protocol.batches import CreateBatchRequest
from omnivox.serving.batches import COMPLETION_WINDOW_S, BatchService, LineAnswer
from omnivox.store.batches import BatchStore
from omnivox.store.files import FileStore

OWNER = "key_1"


class Lines:
    """Answers lines, and can stop after a number of them (as a killed server would)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.stop_after = stop_after
        self.stopped = asyncio.Event()

    async def run(self, owner: str, endpoint: str, body: dict[str, Any]) -> LineAnswer:
        if self.stop_after is not None and len(self.seen) >= self.stop_after:
            self.stopped.set()
            await asyncio.Event().wait()  # never answers: the service is cancelled here
        self.seen.append(body["messages"][0]["content"])
        return LineAnswer(200, {"usage": {"prompt_tokens": 3, "completion_tokens": 2}}, "req_1")


class Held:
    """Answers a line only when the test releases it; counts the lines in flight."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release: dict[str, asyncio.Event] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.changed = asyncio.Condition()

    async def run(self, owner: str, endpoint: str, body: dict[str, Any]) -> LineAnswer:
        text = body["messages"][0]["content"]
        async with self.changed:
            self.release[text] = asyncio.Event()
            self.started.append(text)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.changed.notify_all()
        await self.release[text].wait()
        async with self.changed:
            self.in_flight -= 1
            self.changed.notify_all()
        return LineAnswer(200, {"usage": {"prompt_tokens": 1, "completion_tokens": 1}}, "req_1")

    async def until_started(self, n: int) -> None:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: len(self.started) >= n), 30)


async def idle() -> None:
    return None


def service(
    tmp_path: Path, lines: Lines | Held, clock: list[float], concurrency: int = 1
) -> BatchService:
    return BatchService(
        BatchStore(tmp_path / "batches.sqlite3"),
        FileStore(tmp_path),
        lines.run,
        idle,
        clock=lambda: clock[0],
        concurrency=concurrency,
    )


def batch_file(files: FileStore, n: int) -> str:
    rows = [
        json.dumps(
            {
                "custom_id": f"c{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "m", "messages": [{"role": "user", "content": f"line {i}"}]},
            }
        )
        for i in range(n)
    ]
    return files.create(OWNER, "b.jsonl", "batch", ("\n".join(rows) + "\n").encode()).file_id


def request(file_id: str) -> CreateBatchRequest:
    return CreateBatchRequest(
        input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"
    )


async def run_until(svc: BatchService, done: asyncio.Event) -> None:
    runner = asyncio.create_task(svc.run())
    try:
        await asyncio.wait_for(done.wait(), 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def run_until_status(svc: BatchService, batch_id: str, status: str) -> None:
    done = asyncio.Event()

    async def watch() -> None:
        while (await svc.retrieve(OWNER, batch_id))["status"] != status:
            await asyncio.sleep(0.01)
        done.set()

    watcher = asyncio.create_task(watch())
    await run_until(svc, done)
    await watcher


async def test_a_resumed_batch_runs_each_line_once(tmp_path: Path) -> None:
    clock = [time.time()]
    first = Lines(stop_after=2)
    svc = service(tmp_path, first, clock)
    created = await svc.create(OWNER, request(batch_file(svc.files, 5)))
    await run_until(svc, first.stopped)  # "killed" while running its third line
    assert first.seen == ["line 0", "line 1"]
    second = Lines()
    svc2 = service(tmp_path, second, clock)
    await run_until_status(svc2, created["id"], "completed")
    assert second.seen == ["line 2", "line 3", "line 4"]
    batch = await svc2.retrieve(OWNER, created["id"])
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert batch["usage"]["total_tokens"] == 25


async def test_a_batch_whose_window_passed_while_down_expires_at_start(tmp_path: Path) -> None:
    clock = [time.time()]
    first = Lines(stop_after=1)
    svc = service(tmp_path, first, clock)
    created = await svc.create(OWNER, request(batch_file(svc.files, 3)))
    await run_until(svc, first.stopped)
    clock[0] += COMPLETION_WINDOW_S + 1  # the server was down past the window
    svc2 = service(tmp_path, Lines(), clock)
    await run_until_status(svc2, created["id"], "expired")
    batch = await svc2.retrieve(OWNER, created["id"])
    assert batch["expired_at"] is not None
    output = svc2.files.content(OWNER, batch["output_file_id"]) or b""
    errors = svc2.files.content(OWNER, batch["error_file_id"]) or b""
    assert [json.loads(r)["custom_id"] for r in output.splitlines()] == ["c0"]
    unrun = [json.loads(r) for r in errors.splitlines()]
    assert [(r["custom_id"], r["error"]["code"]) for r in unrun] == [
        ("c1", "batch_expired"),
        ("c2", "batch_expired"),
    ]


async def test_a_batch_whose_window_passes_while_it_runs_expires(tmp_path: Path) -> None:
    clock = [time.time()]

    class Slow(Lines):
        async def run(self, owner: str, endpoint: str, body: dict[str, Any]) -> LineAnswer:
            answer = await super().run(owner, endpoint, body)
            if len(self.seen) == 2:  # the window passes while the second line is answered
                clock[0] += COMPLETION_WINDOW_S + 1
            return answer

    lines = Slow()
    svc = service(tmp_path, lines, clock)
    created = await svc.create(OWNER, request(batch_file(svc.files, 4)))
    await run_until_status(svc, created["id"], "expired")
    assert lines.seen == ["line 0", "line 1"]  # no line starts once the window has passed
    batch = await svc.retrieve(OWNER, created["id"])
    assert batch["expired_at"] is not None and batch["completed_at"] is None
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    output = svc.files.content(OWNER, batch["output_file_id"]) or b""
    errors = svc.files.content(OWNER, batch["error_file_id"]) or b""
    assert [json.loads(r)["custom_id"] for r in output.splitlines()] == ["c0", "c1"]
    unrun = [json.loads(r) for r in errors.splitlines()]
    assert [(r["custom_id"], r["response"], r["error"]["code"]) for r in unrun] == [
        ("c2", None, "batch_expired"),
        ("c3", None, "batch_expired"),
    ]


async def test_concurrency_runs_that_many_lines_at_once_and_no_more(tmp_path: Path) -> None:
    held = Held()
    svc = service(tmp_path, held, [time.time()], concurrency=3)
    created = await svc.create(OWNER, request(batch_file(svc.files, 5)))
    runner = asyncio.create_task(svc.run())
    try:
        await held.until_started(3)
        assert held.in_flight == 3
        held.release[held.started[0]].set()  # one answered: one more starts
        await held.until_started(4)
        assert held.in_flight == 3
        for text in held.started[1:3]:  # two answered together: they share the last line
            held.release[text].set()
        await held.until_started(5)
        for text in held.started[3:]:
            held.release[text].set()

        async def finished() -> None:
            while (await svc.retrieve(OWNER, created["id"]))["status"] != "completed":
                await asyncio.sleep(0.01)

        await asyncio.wait_for(finished(), 30)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert held.most_in_flight == 3
    assert sorted(held.started) == [f"line {i}" for i in range(5)]
    batch = await svc.retrieve(OWNER, created["id"])
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}


async def test_a_batch_of_fewer_lines_than_its_concurrency_completes(tmp_path: Path) -> None:
    lines = Lines()
    svc = service(tmp_path, lines, [time.time()], concurrency=3)
    created = await svc.create(OWNER, request(batch_file(svc.files, 2)))
    await run_until_status(svc, created["id"], "completed")
    assert sorted(lines.seen) == ["line 0", "line 1"]
    batch = await svc.retrieve(OWNER, created["id"])
    assert batch["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
