"""The last 1.x line of the official SDK (``openai==1.109.1``) works unchanged too.

It has no typed ``delta.audio``: the key survives as a plain dict (§3.5), which
is how clients written against it read streamed audio. The SDK runs in its own
virtual environment, in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SDK_VERSION = "1.109.1"
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
def sdk_v1_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("sdk-v1") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", f"openai=={SDK_VERSION}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    if install.returncode != 0:
        pytest.fail(f"could not install openai=={SDK_VERSION}:\n{install.stderr[-2000:]}")
    return python


def test_sdk_1x_reads_audio_answers_and_streams(
    fake_server, sdk_v1_python: Path, tmp_path: Path
) -> None:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    result = subprocess.run(
        [str(sdk_v1_python), str(script), fake_server.base_url, SDK_VERSION],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
