"""Fuzz every route of a keyed server from its OpenAPI document, long, and count the answers.

Runs tests/api/test_fuzz.py (schemathesis: valid and invalid requests generated from
``/openapi.json``, sent with a key to the fake engine) with many more examples than
CI does, prints the counts and writes them to bench/fuzz.json with the run's facts.

    python bench/fuzz.py --examples 5000
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

from bench.facts import REPO_ROOT, run_facts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--examples", type=int, default=5000, help="chat requests (other routes: a fifth)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {
            **os.environ,
            "OMNIVOX_FUZZ_EXAMPLES": str(args.examples),
            "OMNIVOX_FUZZ_REPORT": str(report),
        }
        started_s = time.monotonic()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests/api/test_fuzz.py",
            ],
            cwd=REPO_ROOT,
            env=env,
            check=False,
        )
        counts = json.loads(report.read_text())
    result = {
        **run_facts(),
        "examples": args.examples,
        "pytest_exit": run.returncode,
        "wall_s": round(time.monotonic() - started_s),
        **counts,
    }
    rows = [("requests", result["requests"]), ("  of which chat", result["chat_requests"])]
    rows += [(f"  status {status}", n) for status, n in result["statuses"].items()]
    rows += [
        ("5xx", result["server_errors"]),
        ("error bodies outside OpenAI shape", result["non_openai_error_bodies"]),
        ("keyed refusals without limit headers", result["keyed_refusals_without_limit_headers"]),
    ]
    for name, n in rows:
        print(f"{name:<40}{n:>8}")
    out = Path(__file__).with_suffix(".json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
