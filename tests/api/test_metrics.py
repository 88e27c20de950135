"""GET /metrics: requests counted by route, model and status; first outputs timed; who may read.

Requests go through the official SDK to a server of their own (so that the counts are
exactly the test's), then ``/metrics`` is read as Prometheus would and parsed with the
client library's own parser.
"""

from __future__ import annotations

import io
import time
import wave
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from omnivox.access.setup import build_access
from omnivox.metrics import record_upstream
from omnivox.server.app import create_app
from omnivox.settings import Settings
from omnivox.store.audio import SqliteAudioStore
from tests.access.conftest import make_key, start_keyed_server
from tests.conftest import sdk_client
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer

CHAT = "/v1/chat/completions"
SPEECH = "/v1/audio/speech"
TRANSCRIPTIONS = "/v1/audio/transcriptions"
HELLO = [{"role": "user", "content": "hello there"}]
DEADLINE_S = 10.0

Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(base: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(base + "/metrics", timeout=10, **kwargs)


def parse(text: str) -> Samples:
    """Each sample's name -> its (labels, value) pairs."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(v for found, v in samples.get(name, []) if labels.items() <= found.items())


def requests_by(samples: Samples, routes: set[str]) -> Counter[tuple[str, str, str]]:
    return Counter(
        {
            (labels["route"], labels["model"], labels["status"]): int(v)
            for labels, v in samples.get("omnivox_requests_total", [])
            if labels["route"] in routes
        }
    )


def scrape_until(base: str, done: Callable[[Samples], bool]) -> Samples:
    """The metrics once ``done`` holds: a request is counted once its answer is over,
    which the client may see a moment before the server's task ends."""
    deadline_s = time.monotonic() + DEADLINE_S
    while True:
        response = scrape(base)
        assert response.status_code == 200, response.text
        samples = parse(response.text)
        if done(samples) or time.monotonic() > deadline_s:
            return samples
        time.sleep(0.01)


def tone_wav(seconds: float = 2.0) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(16_000)
        out.writeframes(b"\x00\x10" * int(16_000 * seconds))
    return buffer.getvalue()


class MeteredEngine(FakeEngine):
    """The fake engine with the optional ``metrics()`` an engine may offer."""

    def __init__(self) -> None:
        super().__init__()
        self.values: Mapping[str, float] = {
            "compute_slot_waiting_steps": 2,
            "compute_slot_busy_seconds_total": 1.5,
        }

    def metrics(self) -> Mapping[str, float]:
        return self.values


def test_requests_are_counted_by_route_model_and_status(make_server: Any) -> None:
    server: LiveServer = make_server()
    with sdk_client(server.base_url) as client:
        client.chat.completions.create(model="gpt-4o-audio-preview", messages=HELLO)
        with client.chat.completions.create(
            model="gpt-4o-audio-preview", messages=HELLO, stream=True
        ) as stream:
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        with client.chat.completions.create(
            model="omnivox-audio",
            messages=HELLO,
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "pcm16"},
            stream=True,
        ) as stream:
            assert len(list(stream)) > 2
        speech = client.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
        assert speech.read()
        heard = client.audio.transcriptions.create(model="whisper-1", file=("tone.wav", tone_wav()))
        assert heard.text
        with pytest.raises(openai.BadRequestError):
            client.chat.completions.create(
                model="gpt-4o-audio-preview", messages=HELLO, temperature=5
            )
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert httpx.get(server.root + "/v1/no-such-route", timeout=10).status_code == 404

    routes = {CHAT, SPEECH, TRANSCRIPTIONS, "other"}
    expected = Counter(
        {
            (CHAT, "gpt-4o-audio-preview", "200"): 2,
            (CHAT, "omnivox-audio", "200"): 1,
            (CHAT, "gpt-4o-audio-preview", "400"): 1,
            (CHAT, "other", "404"): 1,  # a name the catalog does not serve
            (SPEECH, "tts-1", "200"): 1,
            (TRANSCRIPTIONS, "whisper-1", "200"): 1,
            ("other", "", "404"): 1,
        }
    )
    samples = scrape_until(server.root, lambda s: requests_by(s, routes) == expected)
    assert requests_by(samples, routes) == expected
    duration = "omnivox_request_duration_seconds_count"
    assert value(samples, duration, route=CHAT) == 5
    assert value(samples, duration, route="other") == 1
    assert value(samples, "omnivox_chat_time_to_first_token_seconds_count") == 2
    assert value(samples, "omnivox_chat_time_to_first_audio_seconds_count") == 1
    assert 0 < value(samples, "omnivox_chat_time_to_first_token_seconds_sum") < DEADLINE_S
    assert value(samples, "omnivox_active_streams") == 0
    assert "omnivox_upstream_requests_total" not in samples  # no upstream called yet


def test_a_route_with_a_parameter_is_counted_by_its_template(make_server: Any) -> None:
    server: LiveServer = make_server()
    with sdk_client(server.base_url) as client:
        client.models.retrieve("gpt-4o-audio-preview")
        client.models.retrieve("omnivox-audio")
    samples = scrape_until(
        server.root,
        lambda s: value(s, "omnivox_requests_total", route="/v1/models/{model_id}") == 2,
    )
    assert requests_by(samples, {"/v1/models/{model_id}"}) == {
        ("/v1/models/{model_id}", "", "200"): 2
    }


def test_a_stream_counts_as_active_while_it_is_sent(make_server: Any) -> None:
    server: LiveServer = make_server(engine=FakeEngine(word_delay_s=0.05))
    with (
        sdk_client(server.base_url) as client,
        client.chat.completions.create(
            model="gpt-4o-audio-preview", messages=HELLO, stream=True
        ) as stream,
    ):
        next(iter(stream))
        assert value(parse(scrape(server.root).text), "omnivox_active_streams") == 1
    samples = scrape_until(server.root, lambda s: value(s, "omnivox_active_streams") == 0)
    assert value(samples, "omnivox_active_streams") == 0


def test_the_engine_and_upstream_calls_are_reported(make_server: Any) -> None:
    engine = MeteredEngine()
    server: LiveServer = make_server(engine=engine)
    record_upstream("chat", "llm.example", "ok", 0.25)
    record_upstream("chat", "llm.example", "timeout", 30.0)
    record_upstream("speech", "tts.example", "ok", 0.5)
    samples = parse(scrape(server.root).text)
    assert value(samples, "omnivox_engine_compute_slot_waiting_steps") == 2
    assert value(samples, "omnivox_engine_compute_slot_busy_seconds_total") == 1.5
    upstream = "omnivox_upstream_requests_total"
    assert value(samples, upstream, part="chat", upstream="llm.example", outcome="ok") == 1
    assert value(samples, upstream, part="chat", outcome="timeout") == 1
    assert value(samples, upstream, part="speech", upstream="tts.example") == 1
    assert value(samples, "omnivox_upstream_seconds_count", part="chat") == 2
    assert value(samples, "omnivox_upstream_seconds_sum", part="chat") == 30.25
    engine.values = {"compute_slot_waiting_steps": 0, "not a name": 1}
    samples = parse(scrape(server.root).text)
    assert value(samples, "omnivox_engine_compute_slot_waiting_steps") == 0
    assert "omnivox_engine_compute_slot_busy_seconds_total" not in samples


def test_a_server_that_stopped_hears_no_more_upstream_calls(make_server: Any) -> None:
    server: LiveServer = make_server()
    metrics = server.server.config.app.metrics
    server.stop()
    record_upstream("chat", "llm.example", "ok", 0.25)
    assert "omnivox_upstream_requests_total" not in parse(metrics.render().decode())


def test_a_keyed_server_answers_loopback_without_a_key_and_others_with_one(
    tmp_path: Path,
) -> None:
    key = make_key(tmp_path, "scraper")
    server = start_keyed_server(tmp_path)
    try:
        assert scrape(server.root).status_code == 200  # this test runs on loopback
        with_key = scrape(server.root, headers={"authorization": f"Bearer {key}"})
        assert with_key.status_code == 200
        assert with_key.headers["content-type"].startswith("text/plain")
        wrong = scrape(server.root, headers={"authorization": "Bearer sk-wrong"})
        assert wrong.status_code == 401
        foreign = scrape(server.root, headers={"host": "evil.example"})
        assert foreign.status_code == 403
        assert (
            scrape(
                server.root, headers={"host": "evil.example", "authorization": f"Bearer {key}"}
            ).status_code
            == 200
        )
    finally:
        server.stop()


@pytest.mark.parametrize("keyed", [True, False])
async def test_from_another_host_a_key_is_needed_unless_the_server_has_none(
    tmp_path: Path, keyed: bool
) -> None:
    settings = Settings(host="127.0.0.1", port=8000, data_dir=tmp_path)
    key = make_key(tmp_path, "scraper") if keyed else None
    access = build_access(settings) if keyed else None
    store = SqliteAudioStore(tmp_path / "audio.sqlite3")
    app = create_app(settings, FakeEngine(), store, access=access)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))
    try:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000"
        ) as client:
            without = await client.get("/metrics")
            assert without.status_code == (401 if keyed else 200)
            if key is not None:
                headers = {"authorization": f"Bearer {key}"}
                with_key = await client.get("/metrics", headers=headers)
                assert with_key.status_code == 200
                assert "omnivox_requests_total" in with_key.text
    finally:
        store.close()
        if access is not None:
            await access.close()


def test_metrics_are_not_in_the_openapi_document(fake_server: LiveServer) -> None:
    document = httpx.get(fake_server.root + "/openapi.json", timeout=10).json()
    assert "/metrics" not in document["paths"]
