"""A client that goes away mid-stream cancels its generation at once."""

from __future__ import annotations

import time

import httpx

from tests.support.fake_engine import FakeEngine

BODY = {
    "model": "gpt-4o-audio-preview",
    "stream": True,
    "modalities": ["text", "audio"],
    "audio": {"voice": "alloy", "format": "pcm16"},
    "messages": [{"role": "user", "content": "slow " * 60}],
}


def test_disconnect_cancels_the_generation(make_server) -> None:
    engine = FakeEngine()
    server = make_server(engine=engine)
    with httpx.stream(
        "POST", server.base_url + "/chat/completions", json=BODY, timeout=30
    ) as response:
        lines = response.iter_lines()
        for line in lines:
            if '"transcript"' in line:
                break
        assert engine.active_generations == 1
    deadline = time.monotonic() + 2.0
    while engine.active_generations and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.active_generations == 0
    assert engine.cancelled_generations == 1
    assert engine.finished_generations == 0
