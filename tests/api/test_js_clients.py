"""JavaScript clients that default to the Responses API, against omnivox: the Vercel AI
SDK's ``openai(model)`` (``generateText`` and ``streamText``) and the OpenAI Node SDK's
``responses.create``, each given only a base URL and a key. They live in
``tests/node`` (``make setup-test`` installs its pinned packages with ``npm ci``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer, start_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
MODEL = "gpt-4o-audio-preview"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = start_server(FakeEngine(), tmp_path_factory.mktemp("js-clients"))
    yield started
    started.stop()


def test_the_vercel_ai_sdk_and_the_node_sdk_get_answers(server: LiveServer) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), "run: make setup-test (npm ci)"
    run = subprocess.run(
        [node, "responses_clients.mjs", server.base_url, MODEL],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    vercel, sdk = result["vercel"], result["node"]
    assert vercel["text"] == "You said: hello there"
    assert vercel["finishReason"] == "stop" and vercel["outputTokens"] == 4
    assert vercel["responseId"].startswith("resp_")
    assert "".join(vercel["pieces"]) == "You said: stream me" and len(vercel["pieces"]) > 1
    assert vercel["streamedFinishReason"] == "stop"
    assert sdk["text"] == "You said: from node" and sdk["id"].startswith("resp_")
    assert sdk["events"][0] == "response.created" and sdk["events"][-1] == "response.completed"
    assert "response.output_text.delta" in sdk["events"]
