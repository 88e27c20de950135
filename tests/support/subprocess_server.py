"""Run ``omnivox serve`` as a user would: a subprocess on a free loopback port."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.live_server import free_port, wait_until_healthy

REPO_ROOT = Path(__file__).resolve().parents[2]
OMNIVOX = Path(sys.executable).parent / "omnivox"


@contextmanager
def omnivox_serve(
    args: Sequence[str], data_dir: Path, ready_timeout_s: float = 180
) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT/v1``) once ``/health`` answers 200."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [str(OMNIVOX), "serve", "--port", str(port), "--data-dir", str(data_dir), *args]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"

    def exited() -> str | None:
        if process.poll() is None:
            return None
        output = process.stdout.read() if process.stdout else ""
        return f"omnivox serve exited with {process.returncode}:\n{output}"

    try:
        wait_until_healthy(base, ready_timeout_s, exited)
        yield base + "/v1"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
