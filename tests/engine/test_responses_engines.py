"""The Responses API on the real embedded cascade: a spoken question answered in words,
and the stored conversation continued by ``previous_response_id``."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator

import pytest

from omnivox.engines.cascade.engine import CascadeEngine
from tests.conftest import sdk_client
from tests.engine.conftest import lend
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.engine

MODEL = "gpt-4o-audio-preview"


@pytest.fixture(scope="module")
def server(
    cascade: CascadeEngine, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    live = lend(cascade, tmp_path_factory.mktemp("responses-cascade"))
    yield live
    live.stop()


def spoken(wav: bytes) -> dict[str, object]:
    data = base64.b64encode(wav).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def test_a_spoken_question_is_answered_and_continued(
    server: LiveServer, espeak: Callable[..., bytes]
) -> None:
    client = sdk_client(server.base_url)
    question = espeak("What is the capital of France?")
    first = client.responses.create(
        model=MODEL,
        input=[{"role": "user", "content": [spoken(question)]}],
        temperature=0,
    )
    assert first.status == "completed" and "Paris" in first.output_text
    assert first.usage is not None and first.usage.input_tokens > 0
    with client.responses.stream(
        model=MODEL,
        previous_response_id=first.id,
        input="Say that city's name once more.",
        temperature=0,
        max_output_tokens=40,
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        second = stream.get_final_response()
    assert second.previous_response_id == first.id and deltas
    assert "".join(deltas) == second.output_text
    assert second.usage is not None and second.usage.input_tokens > first.usage.total_tokens
