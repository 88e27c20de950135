"""Hostile input, measured: long fuzzing of every route, and the bad-audio corpus.

Runs two test modules with their reports switched on, prints the counts and writes
bench/hostile.json with the run's facts:

- tests/api/test_fuzz.py: schemathesis generates valid and invalid requests from
  ``/openapi.json`` and sends them with a key to a keyed server over the fake engine,
  here with many more examples than CI runs; counts the answers by status, the 5xx,
  the error bodies outside OpenAI's shape and the keyed refusals without rate-limit
  headers.
- tests/api/test_bad_audio.py: every file of the generated bad-audio corpus, its
  outcome (answered, or the 400's code) and how long the request took.

    .venv/bin/python -m bench.hostile --examples 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.facts import REPO_ROOT, run_facts


def run_tests(module: str, env: dict[str, str]) -> tuple[int, float]:
    started_s = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", module],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        check=False,
    )
    return run.returncode, round(time.monotonic() - started_s)


def fuzz(examples: int, folder: Path) -> dict[str, Any]:
    report = folder / "fuzz.json"
    env = {"OMNIVOX_FUZZ_EXAMPLES": str(examples), "OMNIVOX_FUZZ_REPORT": str(report)}
    exit_code, wall_s = run_tests("tests/api/test_fuzz.py", env)
    counts = json.loads(report.read_text())
    return {"examples": examples, "pytest_exit": exit_code, "wall_s": wall_s, **counts}


def bad_audio(folder: Path) -> dict[str, Any]:
    report = folder / "bad_audio.jsonl"
    exit_code, wall_s = run_tests(
        "tests/api/test_bad_audio.py", {"OMNIVOX_BAD_AUDIO_REPORT": str(report)}
    )
    cases = [json.loads(line) for line in report.read_text().splitlines()]
    return {
        "pytest_exit": exit_code,
        "wall_s": wall_s,
        "files": len(cases),
        "answered": sum(c["outcome"].startswith("answered") for c in cases),
        "refused": sum(not c["outcome"].startswith("answered") for c in cases),
        "slowest_ms": max(c["ms"] for c in cases),
        "cases": cases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=5000, help="chat requests fuzzed (other routes: a fifth)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "facts": run_facts(),
            "fuzz": fuzz(args.examples, Path(tmp)),
            "bad_audio": bad_audio(Path(tmp)),
        }
    f, b = result["fuzz"], result["bad_audio"]
    rows = [("fuzz: requests", f["requests"]), ("  of which chat", f["chat_requests"])]
    rows += [(f"  status {status}", n) for status, n in f["statuses"].items()]
    rows += [
        ("  5xx", f["server_errors"]),
        ("  error bodies outside OpenAI shape", f["non_openai_error_bodies"]),
        ("  keyed refusals without limit headers", f["keyed_refusals_without_limit_headers"]),
        ("bad audio: files", b["files"]),
        ("  answered correctly", b["answered"]),
        ("  refused with a clear 400", b["refused"]),
        ("  slowest request, ms", b["slowest_ms"]),
        ("  test failures (pytest exit)", b["pytest_exit"]),
    ]
    for name, n in rows:
        print(f"{name:<42}{n:>8}")
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
