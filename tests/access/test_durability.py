"""``kill -9`` of a server under load loses no ledger row of a request the client saw complete."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import openai

from omnivox.access.ledger import SqliteLedger
from tests.access.conftest import FAKE_ENGINE, keyed_client, make_key, serve_process

LOAD_S = 1.5
N_CLIENTS = 6


def test_kill_9_under_load_loses_no_completed_row(tmp_path: Path) -> None:
    key = make_key(tmp_path, "load", tier="5")
    seen: list[str] = []  # completion ids of answers the clients received whole
    stop = threading.Event()

    def load(base_url: str, streaming: bool) -> None:
        client = keyed_client(base_url, key, timeout=10)
        while not stop.is_set():
            try:
                if streaming:
                    chunks = list(
                        client.chat.completions.create(
                            model="gpt-4o-mini-audio-preview",
                            messages=[{"role": "user", "content": "count to 20"}],
                            stream=True,
                            stream_options={"include_usage": True},
                        )
                    )
                    if chunks and chunks[-1].usage is not None:
                        seen.append(chunks[0].id)
                else:
                    completion = client.chat.completions.create(
                        model="gpt-4o-mini-audio-preview",
                        messages=[{"role": "user", "content": "hello there"}],
                    )
                    seen.append(completion.id)
            except (openai.APIError, httpx.HTTPError):
                return  # the server is gone

    with serve_process(FAKE_ENGINE, tmp_path) as served:
        threads = [
            threading.Thread(target=load, args=(served.base_url, i % 2 == 0))
            for i in range(N_CLIENTS)
        ]
        for t in threads:
            t.start()
        time.sleep(LOAD_S)
        os.kill(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    assert len(seen) > 20, "the load never got going"
    ledger = SqliteLedger(tmp_path / "access.sqlite3")
    completed = {e.completion_id for e in ledger.entries_now() if e.status == "completed"}
    ledger.close_now()
    missing = [c for c in seen if c not in completed]
    assert missing == [], f"{len(missing)} of {len(seen)} completed answers have no ledger row"
