"""The last 1.x line of the official SDK works unchanged too.

It has no typed ``delta.audio``: the key survives as a plain dict (§3.5), which
is how clients written against it read streamed audio. ``make setup-test``
installs that SDK (its version is pinned in the Makefile) into ``.venv/sdk-v1``,
apart from the current one; the client runs in a subprocess with that folder
first on its path. Nothing is installed here: tests do not reach the network.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SDK_V1_DIR = Path(sys.prefix) / "sdk-v1"  # the Makefile's $(VENV)/sdk-v1
CLIENT = textwrap.dedent(
    """
    import base64, sys
    import openai
    assert openai.__version__ == sys.argv[2], openai.__version__
    client = openai.OpenAI(base_url=sys.argv[1], api_key="sk-test", max_retries=0,
                           _strict_response_validation=True)
    audio = {"voice": "alloy", "format": "pcm16"}
    messages = [{"role": "user", "content": "old clients too"}]
    one = client.chat.completions.create(model="gpt-4o-audio-preview", modalities=["text", "audio"],
                                         audio=audio, messages=messages)
    transcript, pcm, ids = "", b"", []
    for chunk in client.chat.completions.create(model="gpt-4o-audio-preview", modalities=["text", "audio"],
                                                audio=audio, messages=messages, stream=True):
        delta_audio = getattr(chunk.choices[0].delta, "audio", None) if chunk.choices else None
        if delta_audio:
            transcript += delta_audio.get("transcript", "")
            pcm += base64.b64decode(delta_audio.get("data", ""))
            ids += [delta_audio["id"]] if "id" in delta_audio else []
    assert transcript == one.choices[0].message.audio.transcript == "You said: old clients too", transcript
    assert pcm == base64.b64decode(one.choices[0].message.audio.data)
    assert len(ids) == 1
    try:
        client.chat.completions.create(model="gpt-4o-audio-preview", temperature=9, messages=messages)
    except openai.BadRequestError as exc:
        assert exc.code == "decimal_above_max_value" and exc.param == "temperature"
    else:
        raise AssertionError("no error")
    print("ok")
    """
)


@pytest.fixture(scope="session")
def sdk_v1_version() -> str:
    """The version of the SDK in ``SDK_V1_DIR``; skips when ``make setup-test`` has not run."""
    versions = [
        dist.version
        for dist in importlib.metadata.distributions(path=[str(SDK_V1_DIR)])
        if dist.metadata["Name"] == "openai"
    ]
    if not versions:
        pytest.skip(f"openai 1.x is not installed in {SDK_V1_DIR}: run `make setup-test`")
    assert versions[0].startswith("1."), f"{SDK_V1_DIR} holds openai {versions[0]}, not 1.x"
    return versions[0]


def test_sdk_1x_reads_audio_answers_and_streams(
    fake_server, sdk_v1_version: str, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    result = subprocess.run(
        [sys.executable, str(script), fake_server.base_url, sdk_v1_version],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(SDK_V1_DIR)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
