"""Two ``omnivox serve`` processes sharing one real redis-server enforce one limit."""

from __future__ import annotations

import asyncio
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import openai

from omnivox.access.redis_ledger import RedisLedger
from tests.access.conftest import FAKE_ENGINE, MINI, ask, keyed_client, serve_process
from tests.support.subprocess_server import OMNIVOX


def test_two_replicas_admit_exactly_3_of_20_for_a_3_rpm_key(redis_url: str, tmp_path: Path) -> None:
    created = subprocess.run(
        [
            str(OMNIVOX),
            "keys",
            "create",
            "--name",
            "shared",
            "--tier",
            "free",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip()
    args = [*FAKE_ENGINE, "--redis-url", redis_url, "--ledger", "redis"]
    with ExitStack() as stack:
        with ThreadPoolExecutor(2) as starter:  # start both at once: halves the wait
            futures = [
                starter.submit(lambda: stack.enter_context(serve_process(args, tmp_path)))
                for _ in range(2)
            ]
            replicas = [f.result() for f in futures]
        clients = [stack.enter_context(keyed_client(r.base_url, key)) for r in replicas]

        def one(i: int) -> int:
            try:
                return ask(clients[i % 2], max_completion_tokens=50).http_response.status_code
            except openai.RateLimitError as exc:
                assert exc.type == "requests"
                assert int(exc.response.headers["retry-after"]) >= 1
                return 429

        with ThreadPoolExecutor(20) as pool:
            statuses = list(pool.map(one, range(20)))
        assert sorted(statuses) == [200] * 3 + [429] * 17
        logs = [r.log() for r in replicas]

    async def rows() -> list:
        ledger = RedisLedger(redis_url)
        try:
            return await ledger.entries()
        finally:
            await ledger.close()

    entries = asyncio.run(rows())
    assert sorted(e.status for e in entries) == ["completed"] * 3 + ["rate_limited"] * 17
    assert {e.model for e in entries} == {MINI}
    assert all(e.cost_usd == 0 for e in entries if e.status == "rate_limited")
    summary = subprocess.run(
        [
            str(OMNIVOX),
            "usage",
            "--data-dir",
            str(tmp_path),
            "--redis-url",
            redis_url,
            "--ledger",
            "redis",
            "--key",
            "shared",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "requests by status: completed 3, rate_limited 17" in summary
    for log in logs:
        assert "API keys required (1 active)" in log
        assert key not in log
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("access.sqlite3*"))
    assert key.encode() not in stored
