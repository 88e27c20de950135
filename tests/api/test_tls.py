"""``--tls-certfile``/``--tls-keyfile``: HTTPS and WSS from ``omnivox serve`` itself (the
OpenAI Node SDK's realtime client speaks only ``wss://``), with a certificate the test
makes for 127.0.0.1; and the options refused at start when they can not serve."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import websockets

from devtools.serve import OMNIVOX, REPO_ROOT, free_port
from tests.access.conftest import FAKE_ENGINE

MODEL = "gpt-4o-audio-preview"
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # the fake engine is in tests/


def trusting(certfile: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certfile))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    names = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    files = ["-keyout", str(keyfile), "-out", str(certfile)]
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", *names, *files],
        check=True,
        capture_output=True,
    )
    return certfile, keyfile


@pytest.fixture(scope="module")
def https_root(
    certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    certfile, keyfile = certificate
    port = free_port()
    data_dir = tmp_path_factory.mktemp("tls-data")
    command = [str(OMNIVOX), "serve", "--port", str(port), "--data-dir", str(data_dir)]
    command += [*FAKE_ENGINE, "--tls-certfile", str(certfile), "--tls-keyfile", str(keyfile)]
    with open(data_dir / "serve.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=ENV)
    root = f"https://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (data_dir / "serve.log").read_text()
            try:
                if (
                    httpx.get(root + "/health", verify=trusting(certfile), timeout=2).status_code
                    == 200
                ):
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the TLS server did not start"
            time.sleep(0.1)
        yield root
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_the_sdk_talks_over_https(https_root: str, certificate: tuple[Path, Path]) -> None:
    with (
        httpx.Client(verify=trusting(certificate[0])) as http,
        openai.OpenAI(
            base_url=https_root + "/v1",
            api_key="unused",
            http_client=http,
            max_retries=0,
            _strict_response_validation=True,
        ) as client,
    ):
        completion = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "over tls"}], max_tokens=10
        )
    assert completion.choices[0].message.content == "You said: over tls"
    with pytest.raises(httpx.TransportError):  # a client that does not trust it is refused
        httpx.get(https_root + "/health", timeout=5)


def test_a_realtime_session_over_wss(https_root: str, certificate: tuple[Path, Path]) -> None:
    trusted = trusting(certificate[0])
    url = https_root.replace("https://", "wss://") + "/v1/realtime?model=gpt-realtime"

    async def run() -> list[str]:
        async with websockets.connect(url, ssl=trusted) as ws:
            seen = [json.loads(await ws.recv())["type"]]
            await ws.send(json.dumps({"type": "response.create"}))
            while seen[-1] != "response.done":
                seen.append(json.loads(await asyncio.wait_for(ws.recv(), 30))["type"])
            return seen

    seen = asyncio.run(run())
    assert seen[0] == "session.created" and "response.created" in seen


@pytest.mark.parametrize("given", ["certfile only", "unreadable"])
def test_tls_options_that_can_not_serve_stop_the_start(
    given: str, certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    certfile = certificate[0]
    options = ["--tls-certfile", str(certfile)]
    if given == "unreadable":
        options += ["--tls-keyfile", str(tmp_path / "missing.pem")]
    command = [str(OMNIVOX), "serve", "--port", str(free_port()), "--data-dir", str(tmp_path)]
    run = subprocess.run(
        [*command, *FAKE_ENGINE, *options], capture_output=True, timeout=60, env=ENV
    )
    assert run.returncode == 1
    stderr = run.stderr.decode()
    assert ("go together" if given == "certfile only" else "can not be used") in stderr
