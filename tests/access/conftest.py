"""Fixtures for access control: a real redis-server, keyed servers in-process and as processes.

``redis-server`` (Debian's package) runs on a free loopback port with persistence
off; tests that need it skip when it is not installed. In-process servers get a
``KeyedAccess`` built from their settings exactly as ``omnivox serve`` builds one.
``serve_process`` is ``tests.support.subprocess_server.omnivox_serve`` plus what
these tests need: the process (to ``kill -9`` it) and its log in a file.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest

from devtools.serve import ServedProcess
from devtools.serve import serve_process as devtools_serve_process
from omnivox.access.keys import SqliteKeyStore
from omnivox.access.setup import build_access
from omnivox.access.tiers import Limits
from tests.support.clients import tracked
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import (
    LiveServer,
    free_port,
    start_server,
)

FAKE_ENGINE = ["--engine", "tests.support.fake_engine:create"]
MINI = "gpt-4o-mini-audio-preview"
FULL = "gpt-4o-audio-preview"


def make_key(data_dir: Path, name: str, tier: str = "1", **overrides: int) -> str:
    """Create a key in ``data_dir``'s access file, as ``omnivox keys create`` does."""
    store = SqliteKeyStore(data_dir / "access.sqlite3")
    try:
        return store.create(name, tier, Limits(**overrides))[1]
    finally:
        store.close()


def keyed_client(base_url: str, key: str, max_retries: int = 0, **kwargs: Any) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(
            base_url=base_url,
            api_key=key,
            max_retries=max_retries,
            _strict_response_validation=True,
            **kwargs,
        )
    )


def ask(client: openai.OpenAI, model: str = MINI, text: str = "hello there", **kwargs: Any) -> Any:
    return client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}], **kwargs
    )


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def flush(self) -> None:
        import redis

        client = redis.Redis(port=self.port)
        client.flushall()
        client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(
        [binary, *args, "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)
    client.close()
    yield RedisServer(port, process)
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A URL to the test Redis, emptied for this test."""
    redis_server.flush()
    return redis_server.url()


def start_keyed_server(data_dir: Path, engine: Any = None, **overrides: Any) -> LiveServer:
    return start_server(engine or FakeEngine(), data_dir, access=build_access, **overrides)


@pytest.fixture
def keyed_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start in-process servers with access control over ``tmp_path`` (stopped after the test)."""
    servers: list[LiveServer] = []

    def make(**overrides: Any) -> LiveServer:
        server = start_keyed_server(tmp_path, **overrides)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def serve_process(
    args: Sequence[str], data_dir: Path, ready_timeout_s: float = 60
) -> AbstractContextManager[ServedProcess]:
    """``omnivox serve`` on ``data_dir``, its log kept there under a name of its own (several
    servers may share the directory), for tests that read it after a ``kill -9``."""
    log_path = data_dir / f"serve-{secrets.token_hex(4)}.log"
    return devtools_serve_process(
        args, data_dir, ready_timeout_s=ready_timeout_s, log_path=log_path
    )
