"""Run the real app on a free loopback port in a background thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from omnivox.engines.base import Engine
from omnivox.server.app import create_app
from omnivox.settings import Settings
from omnivox.store.audio import SqliteAudioStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    engine: Any
    settings: Settings
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def root(self) -> str:
        return self.base_url.removesuffix("/v1")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_server(engine: Engine, data_dir: Path, **overrides: Any) -> LiveServer:
    port = free_port()
    settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir, **overrides)
    store = SqliteAudioStore(data_dir / "audio.sqlite3")
    app = create_app(settings, engine, store)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    else:
        raise RuntimeError("the test server did not become ready")
    return LiveServer(base + "/v1", engine, settings, server, thread)
