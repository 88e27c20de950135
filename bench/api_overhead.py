"""Server overhead per request, against the engine's own time with its work held fixed.

The engine is the deterministic test engine with no delays (its work is the same
for every request), run once in-process to time the engine alone, then behind
``omnivox serve`` in a subprocess to time whole HTTP requests from a keep-alive
client on loopback (``http.client``). Overhead = request p50 - engine p50: the
server's HTTP parsing, validation, serving, access control and ledger,
serialisation, and also the loopback I/O and the client's own parsing. That last
part is measured too, as the client floor: the same client fetching the same
response bytes (recorded from the server) from a process that only replays them,
so "overhead beyond the floor" = request p50 - engine p50 - floor p50 is the
server's share alone. Requests/s for a trivial request come from wrk (16
connections, 1 thread) when it is installed.

    .venv/bin/python bench/api_overhead.py [--requests 400]

Prints a table and writes bench/api_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import platform
import re
import shutil
import socket
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


def recorded_response(base_url: str, body: dict[str, Any]) -> bytes:
    """The server's raw HTTP response to ``body``, as a keep-alive response."""
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection((url.hostname, url.port)) as sock:
        sock.sendall(head.encode() + payload)
        received = []
        while data := sock.recv(65536):
            received.append(data)
    return re.sub(rb"(?i)connection: close\r\n", b"", b"".join(received), count=1)


def _replay(response: bytes, port_queue: Any) -> None:
    """Answer every request on one connection with ``response``, doing nothing else."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port_queue.put(server.getsockname()[1])
        conn, _ = server.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pending = b""
        while data := conn.recv(65536):
            pending += data
            while (end := pending.find(b"\r\n\r\n")) >= 0:
                length = int(re.search(rb"(?i)content-length: *(\d+)", pending[:end])[1])  # type: ignore[index]
                if len(pending) < end + 4 + length:
                    break
                pending = pending[end + 4 + length :]
                conn.sendall(response)


def floor_times_ms(response: bytes, n: int, body: dict[str, Any]) -> list[float]:
    """The client's time for ``response`` from a process that only replays it."""
    ports: Any = multiprocessing.Queue()
    replayer = multiprocessing.Process(target=_replay, args=(response, ports), daemon=True)
    replayer.start()
    try:
        return request_times_ms(f"http://127.0.0.1:{ports.get(timeout=10)}/v1", n, body)
    finally:
        replayer.terminate()
        replayer.join()


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
            floor = summary(floor_times_ms(recorded_response(base_url, body), args.requests, body))
            overhead_ms = request["p50_ms"] - engine["p50_ms"]
            results[name] = {
                "engine": engine,
                "request": request,
                "client_floor": floor,
                "overhead_p50_ms": round(overhead_ms, 3),
                "overhead_beyond_floor_p50_ms": round(overhead_ms - floor["p50_ms"], 3),
            }
        results["trivial_requests_per_s"] = wrk_requests_per_s(base_url)
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['machine']}")
    columns = ("engine p50", "request p50", "p95", "p99", "floor p50", "overhead", "beyond floor")
    print(f"{'request':<14}" + "".join(f"{c:>14}" for c in columns))
    for name in ("text", "audio_stream"):
        r = results[name]
        values = (
            r["engine"]["p50_ms"],
            r["request"]["p50_ms"],
            r["request"]["p95_ms"],
            r["request"]["p99_ms"],
            r["client_floor"]["p50_ms"],
            r["overhead_p50_ms"],
            r["overhead_beyond_floor_p50_ms"],
        )
        print(f"{name:<14}" + "".join(f"{v:>12.2f}ms" for v in values))
    print(f"trivial requests/s (wrk, 16 connections): {results['trivial_requests_per_s']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
