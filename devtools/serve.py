"""Run ``omnivox serve`` as a user would: a subprocess on a free loopback port.

The server's output goes to a log file, never to a pipe nobody reads while it
runs (a chatty server would block once the pipe's buffer is full). The child
gets the repository root on ``PYTHONPATH``, so ``--engine devtools.fake_engine:create``
and the benchmarks' engines import there as they do here.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[1]
OMNIVOX = Path(sys.executable).parent / "omnivox"
POLL_INTERVAL_S = 0.05
STOP_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_healthy(
    root_url: str, timeout_s: float, exited: Callable[[], str | None] | None = None
) -> None:
    """Poll ``/health`` until it answers 200; ``exited`` says why a server process died."""
    deadline = time.monotonic() + timeout_s
    while True:
        why = exited() if exited is not None else None
        if why is not None:
            raise RuntimeError(why)
        try:
            if httpx.get(root_url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server at {root_url} did not become ready")
        time.sleep(POLL_INTERVAL_S)


@dataclass
class ServedProcess:
    base_url: str  # http://127.0.0.1:PORT/v1
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(
    args: Sequence[str],
    data_dir: Path,
    *,
    ready_timeout_s: float = 180,
    log_path: Path | None = None,
    python_path: Sequence[Path] = (),
) -> Iterator[ServedProcess]:
    """Yields the running server once ``/health`` answers 200, and stops it after.

    Its output goes to ``log_path``, or to a temporary file removed afterwards;
    ``python_path`` comes before the repository on its ``PYTHONPATH``.
    """
    port = free_port()
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "serve.log"
        command = [str(OMNIVOX), "serve", "--port", str(port), "--data-dir", str(data_dir)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*python_path, REPO_ROOT]))}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        served = ServedProcess(f"http://127.0.0.1:{port}/v1", process, log_path)

        def exited() -> str | None:
            if process.poll() is None:
                return None
            return f"omnivox serve exited with {process.returncode}:\n{served.log()}"

        try:
            wait_until_healthy(served.root, ready_timeout_s, exited)
            yield served
        finally:
            _stop(process)


@contextlib.contextmanager
def omnivox_serve(
    args: Sequence[str], data_dir: Path, ready_timeout_s: float = 180
) -> Iterator[str]:
    """Yields the base URL (``http://127.0.0.1:PORT/v1``) once ``/health`` answers 200."""
    with serve_process(args, data_dir, ready_timeout_s=ready_timeout_s) as served:
        yield served.base_url


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class ThreadedChatServer:
    """A Starlette app answering ``GET /v1/models`` and ``POST /v1/chat/completions`` on a
    free loopback port, in a thread: the fake and spying upstreams of tests and benchmarks."""

    base_url: str
    server: Any
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve_chat_routes(models: Any, chat: Any, name: str) -> ThreadedChatServer:
    """Start the two routes (Starlette endpoints); returns once they answer."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    port = free_port()
    app = Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", chat, methods=["POST"]),
        ]
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {name} did not start")
        time.sleep(0.02)
    return ThreadedChatServer(f"http://127.0.0.1:{port}/v1", server, thread)
