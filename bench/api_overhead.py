"""Server overhead per request, against the engine's own time with its work held fixed.

The engine is the deterministic test engine with no delays (its work is the same
for every request), run once in-process to time the engine alone, then behind
``omnivox serve`` in a subprocess to time whole HTTP requests from a keep-alive
client on loopback (``http.client``, which costs the client tens of
microseconds). Overhead = request p50 - engine p50: the server's HTTP parsing,
validation, serving, access control and ledger, serialisation and loopback I/O. Requests/s for
a trivial request come from wrk (16 connections, 1 thread) when it is installed.

    .venv/bin/python bench/api_overhead.py [--requests 400]

Prints a table and writes bench/api_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.fake_engine import FakeEngine  # noqa: E402
from tests.support.subprocess_server import omnivox_serve  # noqa: E402

from omnivox.engines.base import GenerationRequest, SamplingParams, SpeechOutput, Turn  # noqa: E402

TEXT_BODY = {
    "model": "gpt-4o-audio-preview",
    "messages": [{"role": "user", "content": "hello there"}],
}
AUDIO_BODY = {
    **TEXT_BODY,
    "stream": True,
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "pcm16"},
}
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def engine_times_ms(n: int, speak: bool) -> list[float]:
    engine = FakeEngine(word_delay_s=0.0)
    request = GenerationRequest(
        turns=(Turn("user", ("hello there",)),),
        sampling=SamplingParams(),
        speech=SpeechOutput("alloy") if speak else None,
    )

    async def once() -> float:
        start = time.perf_counter()
        prepared = await engine.prepare(request)
        async for _ in engine.generate(prepared):
            pass
        return (time.perf_counter() - start) * 1000

    async def run() -> list[float]:
        return [await once() for _ in range(n)]

    return asyncio.run(run())


def request_times_ms(base_url: str, n: int, body: dict[str, Any]) -> list[float]:
    """Whole requests over one keep-alive connection, read to the last byte.

    The client is the standard library's ``http.client``: a few tens of
    microseconds per request, so the difference to the engine's time is
    (almost all) the server's.
    """
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    times = []
    for i in range(n + 20):
        start = time.perf_counter()
        connection.request("POST", url.path + "/chat/completions", payload, headers)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        if i >= 20:  # warm-up
            times.append((time.perf_counter() - start) * 1000)
    connection.close()
    return times


def wrk_requests_per_s(base_url: str, duration_s: int = 10) -> float | None:
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % json.dumps(TEXT_BODY))
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c16",
            f"-d{duration_s}s",
            "-s",
            script.name,
            base_url + "/chat/completions",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(script.name)
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return float(match.group(1)) if match else None


def summary(times: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(times), 3),
        "p95_ms": round(percentile(times, 0.95), 3),
        "p99_ms": round(percentile(times, 0.99), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "requests": args.requests,
    }
    with (
        tempfile.TemporaryDirectory() as data_dir,
        omnivox_serve(
            ["--engine", "bench.fixed_engine:create", "--log-level", "warning"], Path(data_dir)
        ) as base_url,
    ):
        for name, body, speak in (("text", TEXT_BODY, False), ("audio_stream", AUDIO_BODY, True)):
            engine = summary(engine_times_ms(args.requests, speak))
            request = summary(request_times_ms(base_url, args.requests, body))
            results[name] = {
                "engine": engine,
                "request": request,
                "overhead_p50_ms": round(request["p50_ms"] - engine["p50_ms"], 3),
            }
        results["trivial_requests_per_s"] = wrk_requests_per_s(base_url)
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}")
    header = ("request", "engine p50", "request p50", "p95", "p99", "overhead p50")
    print(
        f"{header[0]:<14}{header[1]:>12}{header[2]:>13}{header[3]:>9}{header[4]:>9}{header[5]:>14}"
    )
    for name in ("text", "audio_stream"):
        r = results[name]
        print(
            f"{name:<14}{r['engine']['p50_ms']:>10.2f}ms{r['request']['p50_ms']:>11.2f}ms"
            f"{r['request']['p95_ms']:>7.2f}ms{r['request']['p99_ms']:>7.2f}ms{r['overhead_p50_ms']:>12.2f}ms"
        )
    print(f"trivial requests/s (wrk, 16 connections): {results['trivial_requests_per_s']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
