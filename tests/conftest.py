"""Fixtures shared by every test tier."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.clients import MADE_CLIENTS, tracked
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer, start_server


@pytest.fixture(scope="session")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(FakeEngine(), tmp_path_factory.mktemp("data"))
    yield server
    server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start a server with its own settings and a fresh engine (stopped after the test)."""
    servers: list[LiveServer] = []

    def make(engine: Any = None, data_dir: Path | None = None, **overrides: Any) -> LiveServer:
        server = start_server(engine or FakeEngine(), data_dir or tmp_path, **overrides)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    """Close the clients this test made (those of wider fixtures, made before, stay open)."""
    mark = len(MADE_CLIENTS)
    yield
    while len(MADE_CLIENTS) > mark:
        MADE_CLIENTS.pop().close()


def sdk_client(base_url: str) -> openai.OpenAI:
    return tracked(
        openai.OpenAI(
            base_url=base_url, api_key="sk-test", max_retries=0, _strict_response_validation=True
        )
    )


@pytest.fixture
def client(fake_server: LiveServer) -> Iterator[openai.OpenAI]:
    with sdk_client(fake_server.base_url) as client:  # its connections closed after the test
        yield client


@pytest.fixture(scope="session")
def ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        pytest.skip("ffmpeg is not installed (apt-get install ffmpeg)")
    return path
