"""``BatchService`` on its own stores, with a line runner and a clock of the test's: a
batch whose window passed while no server ran expires when one starts, keeping the
lines answered; a batch resumed by a new service never runs a recorded line again."""

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


async def idle() -> None:
    return None


def service(tmp_path: Path, lines: Lines, clock: list[float]) -> BatchService:
    return BatchService(
        BatchStore(tmp_path / "batches.sqlite3"),
        FileStore(tmp_path),
        lines.run,
        idle,
        clock=lambda: clock[0],
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
