"""Run the real app on a free loopback port in a background thread.

``free_port`` and ``wait_until_healthy`` live in ``devtools.serve`` (bench/ uses them too).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from devtools.serve import free_port, wait_until_healthy
from omnivox.access.gate import AccessControl
from omnivox.engines.base import Engine
from omnivox.server.app import create_app
from omnivox.server.connections import uvicorn_config
from omnivox.settings import Settings
from omnivox.store.audio import SqliteAudioStore

__all__ = ["LiveServer", "free_port", "start_server", "wait_until_healthy"]


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


def start_server(
    engine: Engine,
    data_dir: Path,
    access: Callable[[Settings], AccessControl] | None = None,
    **overrides: Any,
) -> LiveServer:
    """The app on a free port; ``access`` builds its access control from the settings."""
    port = free_port()
    settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir, **overrides)
    store = SqliteAudioStore(data_dir / "audio.sqlite3")
    app = create_app(
        settings, engine, store, access=access(settings) if access is not None else None
    )
    config = uvicorn_config(app, settings, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_until_healthy(base, timeout_s=60)
    return LiveServer(base + "/v1", engine, settings, server, thread)
