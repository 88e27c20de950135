"""JavaScript clients that default to the Responses API, against omnivox: the Vercel AI
SDK's ``openai(model)`` (``generateText`` and ``streamText``) and the OpenAI Node SDK's
``responses.create``, each given only a base URL and a key; and the Node SDK's Realtime
flow for a browser: a client secret minted with ``realtime.clientSecrets.create``, then a
session on its native WebSocket client opened with that ``ek_`` secret alone. They live
in ``tests/node`` (``make setup-test`` installs its pinned packages with ``npm ci``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.access.conftest import make_key, start_keyed_server
from tests.support.fake_engine import FakeEngine
from tests.support.live_server import LiveServer, start_server

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
MODEL = "gpt-4o-audio-preview"
REALTIME_MODEL = "gpt-realtime"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    started = start_server(FakeEngine(), tmp_path_factory.mktemp("js-clients"))
    yield started
    started.stop()


def node_command() -> list[str]:
    """node, with the global WebSocket that Node 22 has by default (20 and 21: a flag)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), "run: make setup-test (npm ci)"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().removeprefix("v").split(".")[0])
    return [node] if major >= 22 else [node, "--experimental-websocket"]


def test_the_vercel_ai_sdk_and_the_node_sdk_get_answers(server: LiveServer) -> None:
    run = subprocess.run(
        [*node_command(), "responses_clients.mjs", server.base_url, MODEL],
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


def run_realtime(server: LiveServer, key: str) -> dict[str, Any]:
    """realtime_clients.mjs: a secret minted with ``key``, a session opened with the secret."""
    run = subprocess.run(
        [*node_command(), "realtime_clients.mjs", server.base_url, REALTIME_MODEL, key],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    assert result["secret"]["prefix"] == "ek_"
    assert result["secret"]["session"]["instructions"] == "Answer in one line."
    assert result["url"].endswith("/v1/realtime?model=" + REALTIME_MODEL)
    events = result["events"]
    assert events[0] == "session.created" and events[-1] == "response.done"
    assert result["errors"] == [] and "error" not in events
    session = result["session"]
    assert session["instructions"] == "Answer in one line."
    assert session["model"] == REALTIME_MODEL and session["output_modalities"] == ["text"]
    assert result["text"] == "You said: hello there"
    assert events.count("response.output_text.delta") > 1
    assert not [e for e in events if e.startswith("response.output_audio")]
    assert result["status"] == "completed"
    assert result["output"][0]["content"] == [
        {"type": "output_text", "text": "You said: hello there"}
    ]
    usage = result["usage"]
    assert usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    return result


def test_the_node_sdk_realtime_client_talks_with_a_minted_secret(server: LiveServer) -> None:
    run_realtime(server, "sk-unused")


def test_a_keyed_server_mints_for_a_key_and_the_node_sdk_talks_with_the_secret_alone(
    tmp_path: Path,
) -> None:
    key = make_key(tmp_path, "backend")
    keyed = start_keyed_server(tmp_path)
    try:
        result = run_realtime(keyed, key)
        refused = subprocess.run(
            [*node_command(), "realtime_clients.mjs", keyed.base_url, REALTIME_MODEL, "sk-nope"],
            cwd=NODE_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        keyed.stop()
    assert "rate_limits.updated" in result["events"]  # the minting key's limits
    assert refused.returncode != 0 and "invalid_api_key" in refused.stderr  # minting needs a key
