"""A client that goes away cancels its generation, reading or transcription at once."""

from __future__ import annotations

import contextlib
import time

import httpx

from tests.support.fake_engine import FakeEngine
from tests.support.media import ffmpeg_encode, tone_s16le

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


def wait_until_idle(engine: FakeEngine) -> None:
    deadline = time.monotonic() + 10.0
    while engine.active_generations and time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_listener_leaving_stops_the_reading(make_server) -> None:
    engine = FakeEngine()
    server = make_server(engine=engine)
    body = {"model": "tts-1", "voice": "alloy", "input": "slow " * 60, "response_format": "pcm"}
    with httpx.stream("POST", server.base_url + "/audio/speech", json=body, timeout=30) as response:
        chunks = response.iter_bytes()  # held: a dropped iterator closes the response
        assert next(chunks)
        assert engine.active_generations == 1
    wait_until_idle(engine)
    assert (engine.cancelled_generations, engine.finished_generations) == (1, 0)


def test_a_client_leaving_stops_the_transcription_streamed_or_not(make_server) -> None:
    engine = FakeEngine(word_delay_s=0.2)  # 0.2 s per segment: 12 s for the clip
    server = make_server(engine=engine)
    wav = ffmpeg_encode(tone_s16le(60.0, sample_rate=16_000), "wav", sample_rate=16_000)
    url = server.base_url + "/audio/transcriptions"
    form = {"model": "whisper-1", "stream": "true"}
    with httpx.stream("POST", url, data=form, files={"file": ("a.wav", wav)}, timeout=30) as r:
        lines = r.iter_lines()
        assert "transcript.text.delta" in next(lines)
        assert engine.active_generations == 1
    wait_until_idle(engine)
    assert (engine.cancelled_generations, engine.finished_generations) == (1, 0)
    # This client leaves before the whole answer is made.
    with httpx.Client(timeout=0.5) as client, contextlib.suppress(httpx.ReadTimeout):
        client.post(url, data={"model": "whisper-1"}, files={"file": ("a.wav", wav)})
    wait_until_idle(engine)
    assert (engine.cancelled_generations, engine.finished_generations) == (2, 0)
