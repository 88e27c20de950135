"""The vllm-omni engine against a real vLLM-Omni server (CUDA and ``vllm_omni`` needed).

The server is the one at ``OMNIVOX_VLLM_OMNI_URL`` when set, else ``vllm serve MODEL
--omni`` started here on loopback (``OMNIVOX_VLLM_OMNI_MODEL``, default
Qwen/Qwen2.5-Omni-3B, from the local hub cache: loading takes minutes). One spoken
answer whole and one streamed, through omnivox and the official SDK.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.serve import free_port
from omnivox.engines import create_engine
from omnivox.settings import Settings
from tests.conftest import sdk_client
from tests.support.live_server import LiveServer, start_server

pytestmark = [pytest.mark.engine, pytest.mark.gpu]

MODEL = os.environ.get("OMNIVOX_VLLM_OMNI_MODEL", "Qwen/Qwen2.5-Omni-3B")
START_TIMEOUT_S = 1200.0


def _cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


@pytest.fixture(scope="module")
def upstream_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if url := os.environ.get("OMNIVOX_VLLM_OMNI_URL"):
        yield url
        return
    if importlib.util.find_spec("vllm_omni") is None or not _cuda():
        pytest.skip("needs CUDA and vLLM-Omni (pip install vllm-omni)")
    vllm = shutil.which("vllm")
    if vllm is None:
        pytest.skip("the vllm command is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-omni") / "server.log"
    with Path(log).open("wb") as out:
        server = subprocess.Popen(
            [vllm, "serve", MODEL, "--omni", "--host", "127.0.0.1", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"vllm serve exited ({server.returncode}); see {log}")
            try:
                if httpx.get(url + "/models", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"vllm serve did not answer in {START_TIMEOUT_S:.0f} s; see {log}")
            time.sleep(5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture(scope="module")
def served(upstream_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(
        engine="vllm-omni", upstream=upstream_url, upstream_timeout_s=120, data_dir=data_dir
    )
    server = start_server(create_engine(settings), data_dir)
    yield server
    server.stop()


def test_a_real_server_speaks_whole_and_streamed(served: LiveServer) -> None:
    request = {
        "model": "gpt-4o-audio-preview",
        "modalities": ["text", "audio"],
        "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
        "max_completion_tokens": 64,
    }
    with sdk_client(served.base_url) as client:
        whole = client.chat.completions.create(
            audio={"voice": "onyx", "format": "wav"},
            **request,  # type: ignore[arg-type]
        )
        audio = whole.choices[0].message.audio
        assert audio is not None and audio.transcript.strip()
        assert len(base64.b64decode(audio.data)) > 44 + 48_000 // 2  # at least half a second
        transcript, pieces = "", []
        for chunk in client.chat.completions.create(
            audio={"voice": "nova", "format": "pcm16"},
            stream=True,
            **request,  # type: ignore[arg-type]
        ):
            delta = chunk.choices[0].delta.audio if chunk.choices else None
            if delta is not None:
                transcript += delta.transcript or ""
                if delta.data:
                    pieces.append(base64.b64decode(delta.data))
    assert transcript.strip()
    assert pieces and all(len(piece) % 6 == 0 for piece in pieces)
    assert sum(map(len, pieces)) > 48_000 // 2
