"""A remote chat model behind omnivox: what the front adds, and what a second upstream buys.

Upstreams are llama-cpp-python's OpenAI server on the embedded SmolLM2 GGUF (the same
model the embedded cascade runs). Measured in one run, side by side:

- overhead: a streamed text request (8 tokens, greedy) through ``omnivox serve --llm URL``,
  against the very body omnivox sent upstream for it (recorded by a proxy) sent to the
  upstream directly; both go through the same proxy, alternated, always the same question
  (so that the upstream's prompt cache serves both alike); overhead = front p50 - direct
  p50, to the last byte;
- first audio: spoken answers to the same questions from the front (remote chat model)
  and from an embedded ``omnivox serve``, alternated; the ratio of their p50s;
- throughput: 16 concurrent text requests (32 tokens) through a front with one upstream
  and through one with two, in requests per second. Both upstreams share this machine's
  cores, so the second adds a queue, not compute, on a small host.

Prints a table and writes ``bench/remote.json`` with the run's facts.

    .venv/bin/python -m bench.remote [--rounds 30]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from bench.facts import run_facts
from devtools.llama_server import llama_server
from devtools.serve import serve_process
from devtools.spy_proxy import SpyProxy

OUT = Path(__file__).with_suffix(".json")
QUESTIONS = (
    "What is the capital of France?",
    "Name a large animal.",
    "What colour is the sky?",
    "Give me a word for happy.",
    "What do bees make?",
)


def text_body(question: str, max_tokens: int, model: str) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }


def streamed_s(client: httpx.Client, url: str, body: dict[str, Any]) -> float:
    start = time.perf_counter()
    with client.stream("POST", url + "/chat/completions", json=body) as response:
        for _ in response.iter_bytes():
            pass
        if response.status_code != 200:
            raise RuntimeError(f"{url} answered {response.status_code}")
    return time.perf_counter() - start


def first_audio_s(client: httpx.Client, url: str, question: str) -> float:
    body = {
        "model": "gpt-4o-audio-preview",
        "messages": [{"role": "user", "content": question}],
        "modalities": ["text", "audio"],
        "audio": {"voice": "alloy", "format": "pcm16"},
        "max_tokens": 40,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    first = None
    with client.stream("POST", url + "/chat/completions", json=body) as response:
        for line in response.iter_lines():
            if first is None and '"data":"' in line.replace(" ", ""):
                first = time.perf_counter() - start
    return first if first is not None else float("nan")


def throughput(url: str, n_requests: int, concurrency: int) -> float:
    body = text_body("Tell me something about the sea.", 32, "gpt-4o-audio-preview")
    with httpx.Client(timeout=300) as client:
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda _: streamed_s(client, url, body), range(n_requests)))
        return n_requests / (time.perf_counter() - start)


def p50_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="requests per side (overhead)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with (
            llama_server(folder / "a.log") as up_a,
            llama_server(folder / "b.log") as up_b,
            contextlib.closing(SpyProxy(up_a)) as spy,
            serve_process(["--llm", spy.base_url], folder / "one", ready_timeout_s=600) as one,
            serve_process(["--llm", f"{up_a},{up_b}"], folder / "two", ready_timeout_s=600) as two,
            serve_process([], folder / "embedded", ready_timeout_s=600) as embedded,
            httpx.Client(timeout=300) as client,
        ):
            direct, front = [], []
            for i in range(args.rounds + 3):  # the first rounds warm both paths
                f = streamed_s(client, one.base_url, text_body(QUESTIONS[0], 8, "omnivox-audio"))
                d = streamed_s(client, spy.base_url, spy.bodies[-1])  # what omnivox sent
                if i >= 3:
                    direct.append(d)
                    front.append(f)
            remote_audio, embedded_audio = [], []
            for i in range(12):
                question = QUESTIONS[i % len(QUESTIONS)]
                remote_audio.append(first_audio_s(client, one.base_url, question))
                embedded_audio.append(first_audio_s(client, embedded.base_url, question))
            one_rps = throughput(one.base_url, 32, 16)
            two_rps = throughput(two.base_url, 32, 16)
    report = {
        "facts": run_facts(),
        "rounds": args.rounds,
        "direct_p50_ms": p50_ms(direct),
        "front_p50_ms": p50_ms(front),
        "overhead_p50_ms": round(p50_ms(front) - p50_ms(direct), 2),
        "first_audio_remote_p50_ms": p50_ms(remote_audio[2:]),
        "first_audio_embedded_p50_ms": p50_ms(embedded_audio[2:]),
        "first_audio_ratio": round(
            statistics.median(remote_audio[2:]) / statistics.median(embedded_audio[2:]), 3
        ),
        "throughput_one_upstream_rps": round(one_rps, 2),
        "throughput_two_upstreams_rps": round(two_rps, 2),
    }
    OUT.write_text(json.dumps(report, indent=2) + "\n")
    rows = [
        ("streamed text (8 tokens), upstream directly, p50", f"{report['direct_p50_ms']} ms"),
        ("the same through omnivox --llm URL, p50", f"{report['front_p50_ms']} ms"),
        ("overhead added by omnivox, p50", f"{report['overhead_p50_ms']} ms (goal <= 3)"),
        ("first audio, remote chat model, p50", f"{report['first_audio_remote_p50_ms']} ms"),
        ("first audio, embedded chat model, p50", f"{report['first_audio_embedded_p50_ms']} ms"),
        ("first audio remote / embedded", f"{report['first_audio_ratio']} (goal <= 1.1)"),
        ("16 concurrent, one upstream", f"{report['throughput_one_upstream_rps']} req/s"),
        ("16 concurrent, two upstreams", f"{report['throughput_two_upstreams_rps']} req/s"),
    ]
    for name, value in rows:
        print(f"{name:<52} {value}")
    print(f"saved {OUT}")


if __name__ == "__main__":
    main()
