"""Access-control overhead per request: the limiter and the ledger, alone and end to end.

Components are timed directly, one request after another on one event loop,
as the server runs them:

- limiter: the admission (one request against RPM/RPD and the prompt estimate
  with the maximum output against TPM, in one call) and the correction to the
  actual usage at the end: two calls per request;
- ledger: writing the request's row (SQLite in WAL with synchronous NORMAL, the
  default, and FULL; a Redis stream);
- gate: the whole per-request path of ``KeyedAccess`` (authenticate the key,
  admit, charge, finalize: limiter + ledger + key lookup), local (SQLite keys,
  in-process limiter, SQLite ledger) and with Redis (Redis limiter and ledger).

End to end, ``omnivox serve`` with the delay-free test engine is timed from a
keep-alive client on loopback without keys (open, loopback) and with a key,
local and with Redis; the three servers run at once and requests go to each in
turn, so that load from elsewhere falls on all three alike. The difference of
p50s is the overhead as a client sees it.

Components run on uvloop when it is installed, as ``omnivox serve`` does.
Redis is a ``redis-server`` started here on a free loopback port (persistence
off); the Redis rows are skipped without one.

    .venv/bin/python -m bench.limits [--requests 2000] [--http-requests 400] [--no-e2e]

Prints a table and writes bench/limits.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.facts import run_facts
from devtools.serve import OMNIVOX, free_port, omnivox_serve
from omnivox.access.gate import KeyedAccess
from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import Ledger, LedgerEntry, SqliteLedger
from omnivox.access.limiter import Limiter, MemoryLimiter
from omnivox.access.redis_ledger import RedisLedger
from omnivox.access.redis_limiter import RedisLimiter
from omnivox.access.tiers import AccessConfig, Limits
from omnivox.serving.runs import MeteredRun
from omnivox.serving.usage import UsageCounter

WARMUP = 50
TIER_5_MINI = Limits(30_000, None, 150_000_000)
BODY = {
    "model": "gpt-4o-mini-audio-preview",
    "messages": [{"role": "user", "content": "hello there"}],
    "max_completion_tokens": 100,
}


def uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(times_ms: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times_ms), 4),
        "p99_ms": round(percentile(times_ms, 0.99), 4),
    }


async def timed(n: int, once: Callable[[int], Awaitable[None]]) -> dict[str, float]:
    times_ms = []
    for i in range(n + WARMUP):
        start = time.perf_counter_ns()
        await once(i)
        if i >= WARMUP:
            times_ms.append((time.perf_counter_ns() - start) / 1e6)
    return summary(times_ms)


def limiter_request(limiter: Limiter) -> Callable[[int], Awaitable[None]]:
    async def once(i: int) -> None:
        bucket = f"bench{i % 100}:gpt-4o-mini-audio"
        assert (await limiter.acquire(bucket, TIER_5_MINI, 1, 107)).admitted
        await limiter.adjust_tokens(bucket, TIER_5_MINI, 9 - 107)

    return once


def ledger_write(ledger: Ledger) -> Callable[[int], Awaitable[None]]:
    async def once(i: int) -> None:
        await ledger.record(
            LedgerEntry(
                f"req_{i}",
                f"chatcmpl-{i}",
                "key_bench",
                "bench",
                "gpt-4o-mini-audio-preview",
                "omnivox-audio-2026-11-22",
                "gpt-4o-mini-audio",
                time.time(),
                3,
                "completed",
                5,
                0,
                4,
                0,
                3.15e-6,
            )
        )

    return once


def gate_request(access: KeyedAccess, raw_key: str) -> Callable[[int], Awaitable[None]]:
    header = f"Bearer {raw_key}"

    async def once(i: int) -> None:
        caller = access.authenticate(header)
        admission = await access.admit(
            caller, "gpt-4o-mini-audio-preview", "omnivox-audio-2026-11-22", 100, 7, f"req_{i}"
        )
        run = MeteredRun(f"chatcmpl-{i}", UsageCounter(5, 0))
        await admission.charge(run)
        run.usage.completion_text_tokens = 4
        await run.finish("completed")

    return once


@contextmanager
def redis_server() -> Iterator[str | None]:
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    import redis

    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        process = subprocess.Popen([binary, *args, "--dir", workdir], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        client.close()
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait()


async def components(n: int, workdir: Path, redis_url: str | None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["limiter_memory"] = await timed(n, limiter_request(MemoryLimiter()))
    for sync in ("normal", "full"):
        ledger = SqliteLedger(workdir / f"ledger-{sync}.sqlite3", synchronous=sync)
        results[f"ledger_sqlite_{sync}"] = await timed(n, ledger_write(ledger))
        await ledger.close()
    keys = SqliteKeyStore(workdir / "gate.sqlite3")
    raw_key = keys.create("bench", "5", Limits())[1]
    local = KeyedAccess(
        keys,
        MemoryLimiter(),
        SqliteLedger(workdir / "gate.sqlite3"),
        AccessConfig(),
        open_without_keys=False,
    )
    results["gate_local"] = await timed(n, gate_request(local, raw_key))
    if redis_url is not None:
        limiter = RedisLimiter(redis_url)
        results["limiter_redis"] = await timed(n, limiter_request(limiter))
        await limiter.close()
        redis_ledger = RedisLedger(redis_url)
        results["ledger_redis"] = await timed(n, ledger_write(redis_ledger))
        await redis_ledger.close()
        remote = KeyedAccess(
            keys,
            RedisLimiter(redis_url),
            RedisLedger(redis_url),
            AccessConfig(),
            open_without_keys=False,
        )
        results["gate_redis"] = await timed(n, gate_request(remote, raw_key))
        await remote.limiter.close()
        await remote.ledger.close()
    await local.close()
    return results


def end_to_end(n: int, redis_url: str | None) -> dict[str, Any]:
    """The servers run side by side and take turns, so load from elsewhere hits all alike."""
    engine = ["--engine", "bench.fixed_engine:create", "--log-level", "warning"]
    setups: list[tuple[str, list[str], bool]] = [("open", [], False), ("keys_local", [], True)]
    if redis_url is not None:
        setups.append(("keys_redis", ["--redis-url", redis_url, "--ledger", "redis"], True))
    times_ms: dict[str, list[float]] = {name: [] for name, _, _ in setups}
    with ExitStack() as stack:
        clients: dict[str, tuple[str, httpx.Client]] = {}
        for name, extra, with_key in setups:
            data_dir = stack.enter_context(tempfile.TemporaryDirectory())
            key = "sk-none"
            if with_key:
                create = [
                    "keys",
                    "create",
                    "--name",
                    "bench",
                    "--tier",
                    "5",
                    "--data-dir",
                    data_dir,
                ]
                key = subprocess.run(
                    [str(OMNIVOX), *create], capture_output=True, text=True, check=True
                ).stdout.strip()
            base_url = stack.enter_context(omnivox_serve([*engine, *extra], Path(data_dir)))
            client = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {key}"})
            clients[name] = (base_url, stack.enter_context(client))
        for i in range(n + WARMUP):
            for name, (base_url, client) in clients.items():
                start = time.perf_counter_ns()
                response = client.post(base_url + "/chat/completions", json=BODY)
                assert response.status_code == 200, response.text
                if i >= WARMUP:
                    times_ms[name].append((time.perf_counter_ns() - start) / 1e6)
    results: dict[str, Any] = {name: summary(t) for name, t in times_ms.items()}
    for name in ("keys_local", "keys_redis"):
        if name in results:
            overhead = results[name]["p50_ms"] - results["open"]["p50_ms"]
            results[f"{name}_overhead_p50_ms"] = round(overhead, 4)
    return results


ROWS = (
    ("limiter_memory", "limiter, in-process (2 calls)"),
    ("limiter_redis", "limiter, Redis (2 calls)"),
    ("ledger_sqlite_normal", "ledger, SQLite WAL NORMAL"),
    ("ledger_sqlite_full", "ledger, SQLite WAL FULL"),
    ("ledger_redis", "ledger, Redis stream"),
    ("gate_local", "whole gate, local"),
    ("gate_redis", "whole gate, Redis"),
)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--http-requests", type=int, default=400)
    parser.add_argument("--no-e2e", dest="e2e", action="store_false")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "facts": run_facts(),
        "requests": args.requests,
    }
    with tempfile.TemporaryDirectory() as workdir, redis_server() as redis_url:
        results["redis"] = redis_url is not None
        loop = "uvloop" if uvloop_factory() else "asyncio"
        results["event_loop"] = loop
        with asyncio.Runner(loop_factory=uvloop_factory()) as runner:
            results["components"] = runner.run(components(args.requests, Path(workdir), redis_url))
        if args.e2e:
            results["http_requests"] = args.http_requests
            results["end_to_end"] = end_to_end(args.http_requests, redis_url)
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"machine: {results['facts']['cpu']}, {results['facts']['machine']}; "
        f"{results['event_loop']}; {args.requests} requests per row"
    )
    print(f"{'per request':<32}{'p50':>10}{'p99':>10}")
    for key, label in ROWS:
        if key in results["components"]:
            r = results["components"][key]
            print(f"{label:<32}{r['p50_ms']:>8.3f}ms{r['p99_ms']:>8.3f}ms")
    e2e = results.get("end_to_end")
    if e2e:
        print(f"\nend to end ({args.http_requests} HTTP requests)")
        for key in ("open", "keys_local", "keys_redis"):
            if key in e2e:
                extra = e2e.get(f"{key}_overhead_p50_ms")
                note = f"   (+{extra:.3f}ms p50)" if extra is not None else ""
                r = e2e[key]
                print(f"{key:<32}{r['p50_ms']:>8.3f}ms{r['p99_ms']:>8.3f}ms{note}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
