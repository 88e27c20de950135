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
server's share alone. The server's CPU time per request (all its threads, from
the kernel's scheduler statistics) less the engine's own CPU time is the CPU
overhead: the server's work, which the host's load moves far less than wall
time. The three are timed in alternation, in short rounds, and
each overhead is the median over the rounds of that round's difference, so that
the host's load drifting over a run does not land on one side of a difference.
Requests/s for a trivial request come from wrk (16 connections, 1 thread) when
it is installed.

    .venv/bin/python -m bench.api_overhead [--requests 1200] [--rounds 12]

Prints a table and writes bench/api_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.facts import run_facts
from devtools.fake_engine import FakeEngine
from devtools.serve import omnivox_serve
from omnivox.engines.base import GenerationRequest, SamplingParams, SpeechOutput, Turn

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
TEXT_STREAM_BODY = {**TEXT_BODY, "stream": True}
RESPONSES_BODY = {"model": "gpt-4o-audio-preview", "input": "hello there", "stream": True}
CHAT_PATH = "/chat/completions"
RESPONSES_PATH = "/responses"
# (name, path, body, spoken): the kinds of request timed, each against the same engine work
KINDS = (
    ("text", CHAT_PATH, TEXT_BODY, False),
    ("audio_stream", CHAT_PATH, AUDIO_BODY, True),
    ("text_stream", CHAT_PATH, TEXT_STREAM_BODY, False),
    ("responses_stream", RESPONSES_PATH, RESPONSES_BODY, False),
)
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""


WARM_UP_REQUESTS = 20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class EngineTimer:
    """The engine alone, in this process: the same request, timed end to end."""

    def __init__(self, speak: bool) -> None:
        self.engine = FakeEngine(word_delay_s=0.0)
        self.request = GenerationRequest(
            turns=(Turn("user", ("hello there",)),),
            sampling=SamplingParams(),
            speech=SpeechOutput("alloy") if speak else None,
        )
        self.loop = asyncio.new_event_loop()
        self.cpu_s = 0.0
        self.n_timed = 0

    def times_ms(self, n: int) -> list[float]:
        cpu_start_s = time.thread_time()
        try:
            return self._times_ms(n)
        finally:
            self.cpu_s += time.thread_time() - cpu_start_s
            self.n_timed += n

    def _times_ms(self, n: int) -> list[float]:
        async def once() -> float:
            start = time.perf_counter()
            prepared = await self.engine.prepare(self.request)
            async for _ in self.engine.generate(prepared):
                pass
            return (time.perf_counter() - start) * 1000

        async def run() -> list[float]:
            return [await once() for _ in range(n)]

        return self.loop.run_until_complete(run())

    def close(self) -> None:
        self.loop.close()


class Client:
    """Whole requests over one keep-alive connection, read to the last byte.

    The client is the standard library's ``http.client``: a few tens of
    microseconds per request, so the difference to the engine's time is
    (almost all) the server's.
    """

    def __init__(self, base_url: str, path: str, body: dict[str, Any]) -> None:
        url = urlsplit(base_url)
        self.path = url.path + path
        self.payload = json.dumps(body).encode()
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.times_ms(WARM_UP_REQUESTS)

    def times_ms(self, n: int) -> list[float]:
        headers = {"Content-Type": "application/json"}
        times = []
        for _ in range(n):
            start = time.perf_counter()
            self.connection.request("POST", self.path, self.payload, headers)
            response = self.connection.getresponse()
            response.read()
            assert response.status == 200
            times.append((time.perf_counter() - start) * 1000)
        return times

    def close(self) -> None:
        self.connection.close()


def recorded_response(base_url: str, path: str, body: dict[str, Any]) -> bytes:
    """The server's raw HTTP response to ``body``, as a keep-alive response."""
    url = urlsplit(base_url)
    payload = json.dumps(body).encode()
    head = (
        f"POST {url.path}{path} HTTP/1.1\r\nHost: {url.netloc}\r\n"
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


@contextmanager
def replayer(response: bytes) -> Iterator[str]:
    """The base URL of a process that answers every request with ``response``."""
    ports: Any = multiprocessing.Queue()
    process = multiprocessing.Process(target=_replay, args=(response, ports), daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=10)}/v1"
    finally:
        process.terminate()
        process.join()


def server_cpu_s() -> float:
    """CPU time of the ``omnivox serve`` child so far, all its threads, from the scheduler (ns)."""
    total_ns = 0
    pids = _children("omnivox")
    assert pids, "the omnivox serve process was not found among this process's children"
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                total_ns += int((task / "schedstat").read_text().split()[0])
    return total_ns / 1e9


def _children(name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            comm, fields = text.split("(", 1)[1].rsplit(")", 1)
            if int(fields.split()[1]) == os.getpid() and comm.startswith(name):
                found.append(int(stat.parent.name))
    return found


def measure(
    base_url: str, path: str, body: dict[str, Any], speak: bool, n: int, rounds: int
) -> dict[str, Any]:
    """Engine, server and floor timed in alternation, ``rounds`` times.

    The host's load drifts over seconds; timing the three side by side in short
    rounds and taking the median of the rounds' differences keeps that drift
    out of the overhead.
    """
    per_round = max(1, n // rounds)
    engine = EngineTimer(speak)
    engine.times_ms(WARM_UP_REQUESTS)
    pooled: dict[str, list[float]] = {"engine": [], "request": [], "client_floor": []}
    overheads, beyond = [], []
    with replayer(recorded_response(base_url, path, body)) as floor_url:
        server, floor = Client(base_url, path, body), Client(floor_url, path, body)
        server_cpu = 0.0
        for _ in range(rounds):
            e = engine.times_ms(per_round)
            cpu_start_s = server_cpu_s()
            r = server.times_ms(per_round)
            server_cpu += server_cpu_s() - cpu_start_s
            f = floor.times_ms(per_round)
            pooled["engine"] += e
            pooled["request"] += r
            pooled["client_floor"] += f
            overhead = statistics.median(r) - statistics.median(e)
            overheads.append(overhead)
            beyond.append(overhead - statistics.median(f))
        server.close()
        floor.close()
    engine.close()
    result: dict[str, Any] = {k: summary(v) for k, v in pooled.items()}
    result["overhead_p50_ms"] = round(statistics.median(overheads), 3)
    result["overhead_beyond_floor_p50_ms"] = round(statistics.median(beyond), 3)
    result["overhead_p50_ms_by_round"] = [round(o, 3) for o in overheads]
    engine_cpu_ms = 1000 * engine.cpu_s / engine.n_timed
    result["engine_cpu_ms"] = round(engine_cpu_ms, 3)
    result["server_cpu_ms"] = round(1000 * server_cpu / (per_round * rounds), 3)
    result["server_cpu_beyond_engine_ms"] = round(result["server_cpu_ms"] - engine_cpu_ms, 3)
    return result


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
    parser.add_argument("--requests", type=int, default=1200, help="per kind of request")
    parser.add_argument("--rounds", type=int, default=12, help="engine/server/floor alternations")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "facts": run_facts(),
        "requests": args.requests,
        "rounds": args.rounds,
    }
    with (
        tempfile.TemporaryDirectory() as data_dir,
        omnivox_serve(
            ["--engine", "bench.fixed_engine:create", "--log-level", "warning"], Path(data_dir)
        ) as base_url,
    ):
        for name, path, body, speak in KINDS:
            results[name] = measure(base_url, path, body, speak, args.requests, args.rounds)
        results["trivial_requests_per_s"] = wrk_requests_per_s(base_url)
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"machine: {results['facts']['cpu']}, {results['facts']['machine']}")
    columns = (
        "engine p50",
        "request p50",
        "p95",
        "p99",
        "floor p50",
        "overhead",
        "beyond floor",
        "server CPU",
        "CPU overhead",
    )
    print(f"{'request':<17}" + "".join(f"{c:>14}" for c in columns))
    for name, *_ in KINDS:
        r = results[name]
        values = (
            r["engine"]["p50_ms"],
            r["request"]["p50_ms"],
            r["request"]["p95_ms"],
            r["request"]["p99_ms"],
            r["client_floor"]["p50_ms"],
            r["overhead_p50_ms"],
            r["overhead_beyond_floor_p50_ms"],
            r["server_cpu_ms"],
            r["server_cpu_beyond_engine_ms"],
        )
        print(f"{name:<17}" + "".join(f"{v:>12.2f}ms" for v in values))
    gap = results["responses_stream"]["overhead_p50_ms"] - results["text_stream"]["overhead_p50_ms"]
    results["responses_minus_chat_stream_overhead_ms"] = round(gap, 3)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"streamed Responses overhead - streamed chat overhead: {gap:+.3f} ms (goal <= 0.5)")
    print(f"trivial requests/s (wrk, 16 connections): {results['trivial_requests_per_s']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
