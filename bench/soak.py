"""Soak: spoken clients streaming answers from `omnivox serve` for minutes on end.

Starts `omnivox serve` (the embedded cascade by default) as a user would, then N
clients each send spoken questions (espeak-ng, a voice other than the server's) with
``stream: true`` and audio out, one after another, reading every answer whole and
checking it: ``[DONE]`` last, one audio id, whole 16-bit samples, a transcript. Every
``--abandon-every``-th request a client leaves after the first audio instead, as
people do. At the end: requests, errors (any answer that fails a check, any status
but 200), the server's resident memory at start and end, and the lines it logged at
ERROR level. Prints a table and writes bench/soak.json with the run's facts.

    .venv/bin/python -m bench.soak --minutes 10 --clients 4
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.facts import run_facts
from devtools.serve import serve_process

QUESTIONS = [
    "What is the capital of France?",
    "Name three colours of the rainbow.",
    "How many legs does a spider have?",
    "What do bees make?",
    "Tell me a fun fact about the moon.",
    "Which ocean is the largest?",
]


def espeak_wav(text: str, folder: Path) -> bytes:
    path = folder / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return path.read_bytes()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.completed = 0
        self.abandoned = 0
        self.errors: Counter[str] = Counter()
        self.audio_s = 0.0

    def add(self, outcome: str, audio_s: float = 0.0) -> None:
        with self.lock:
            self.requests += 1
            if outcome == "completed":
                self.completed += 1
                self.audio_s += audio_s
            elif outcome == "abandoned":
                self.abandoned += 1
            else:
                self.errors[outcome] += 1


def one_answer(client: httpx.Client, url: str, wav: bytes, voice: str, abandon: bool) -> str:
    body = {
        "model": "gpt-4o-audio-preview",
        "stream": True,
        "modalities": ["text", "audio"],
        "audio": {"voice": voice, "format": "pcm16"},
        "max_completion_tokens": 80,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "input_audio",
                        "input_audio": {"data": base64.b64encode(wav).decode(), "format": "wav"},
                    }
                ],
            }
        ],
    }
    audio_ids: set[str] = set()
    pcm_bytes, transcript, done = 0, "", False
    with client.stream("POST", url, json=body) as response:
        if response.status_code != 200:
            return f"status {response.status_code}"
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                done = True
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                return f"error event: {chunk['error'].get('code')}"
            for choice in chunk.get("choices", []):
                audio = choice.get("delta", {}).get("audio") or {}
                if "id" in audio:
                    audio_ids.add(audio["id"])
                if audio.get("data"):
                    pcm_bytes += len(base64.b64decode(audio["data"]))
                    if abandon:
                        return "abandoned"
                transcript += audio.get("transcript", "")
    if not done:
        return "no [DONE]"
    if len(audio_ids) != 1:
        return f"{len(audio_ids)} audio ids"
    if pcm_bytes % 2 or not pcm_bytes:
        return "audio not whole samples"
    if not transcript.strip():
        return "empty transcript"
    return f"completed:{pcm_bytes / 48_000:.3f}"


def client_loop(
    index: int, url: str, wavs: list[bytes], until_s: float, abandon_every: int, tally: Tally
) -> None:
    voices = ["alloy", "nova", "echo", "shimmer"]
    with httpx.Client(timeout=120) as client:
        n = 0
        while time.monotonic() < until_s:
            n += 1
            abandon = abandon_every > 0 and n % abandon_every == 0
            try:
                outcome = one_answer(
                    client, url, wavs[(index + n) % len(wavs)], voices[index % 4], abandon
                )
            except (httpx.HTTPError, ValueError) as exc:
                outcome = type(exc).__name__
            if outcome.startswith("completed:"):
                tally.add("completed", float(outcome.partition(":")[2]))
            else:
                tally.add(outcome)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--abandon-every", type=int, default=10)
    parser.add_argument("serve_args", nargs="*", help="extra arguments for omnivox serve")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        wavs = [espeak_wav(q, folder) for q in QUESTIONS]
        log_path = folder / "serve.log"
        try:
            served = stack.enter_context(
                serve_process(
                    args.serve_args, folder / "data", ready_timeout_s=300, log_path=log_path
                )
            )
        except RuntimeError as exc:
            sys.exit(str(exc))
        pid = served.process.pid
        rss_start = rss_mib(pid)
        tally = Tally()
        until_s = time.monotonic() + args.minutes * 60
        url = served.base_url + "/chat/completions"
        threads = [
            threading.Thread(
                target=client_loop, args=(i, url, wavs, until_s, args.abandon_every, tally)
            )
            for i in range(args.clients)
        ]
        peak = rss_start
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mib(pid))
            time.sleep(1)
        rss_end = rss_mib(pid)
        health = httpx.get(served.root + "/health", timeout=5).status_code
        stack.close()  # the server stops before its log is read
        error_lines = [line for line in log_path.read_text().splitlines() if " ERROR " in line]
    result: dict[str, Any] = {
        "facts": run_facts(),
        "minutes": args.minutes,
        "clients": args.clients,
        "abandon_every": args.abandon_every,
        "requests": tally.requests,
        "completed": tally.completed,
        "abandoned_on_purpose": tally.abandoned,
        "errors": sum(tally.errors.values()),
        "error_kinds": dict(tally.errors),
        "answer_audio_s": round(tally.audio_s, 1),
        "rss_start_mib": round(rss_start),
        "rss_end_mib": round(rss_end),
        "rss_peak_mib": round(peak),
        "health_after": health,
        "server_error_log_lines": len(error_lines),
        "first_error_lines": error_lines[:5],
    }
    for name in (
        "requests",
        "completed",
        "abandoned_on_purpose",
        "errors",
        "answer_audio_s",
        "rss_start_mib",
        "rss_end_mib",
        "rss_peak_mib",
        "server_error_log_lines",
    ):
        print(f"{name:<28}{result[name]:>10}")
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
