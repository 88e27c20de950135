"""The ``omnivox`` command as a user runs it."""

from __future__ import annotations

import subprocess

from tests.conftest import sdk_client
from tests.support.subprocess_server import OMNIVOX, omnivox_serve


def test_serve_runs_as_a_subprocess_on_a_free_port(tmp_path) -> None:
    with omnivox_serve(["--engine", "tests.support.fake_engine:create"], tmp_path) as base_url:
        client = sdk_client(base_url)
        completion = client.chat.completions.create(
            model="gpt-4o-audio-preview",
            modalities=["text", "audio"],
            audio={"voice": "alloy", "format": "mp3"},
            messages=[{"role": "user", "content": "from a subprocess"}],
        )
        assert completion.choices[0].message.audio is not None
        assert completion.choices[0].message.audio.transcript == "You said: from a subprocess"
    assert (tmp_path / "audio.sqlite3").exists()


def test_help_explains_the_options() -> None:
    out = subprocess.run(
        [str(OMNIVOX), "serve", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for flag in (
        "--host",
        "--port",
        "--engine",
        "--data-dir",
        "--asr",
        "--llm",
        "--tts",
        "--max-body-bytes",
        "--audio-ttl-s",
    ):
        assert flag in out


def test_an_unknown_engine_stops_with_one_clear_message(tmp_path) -> None:
    result = subprocess.run(
        [str(OMNIVOX), "serve", "--engine", "nosuch.module:make", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "omnivox: Engine 'nosuch.module:make' can not be loaded" in result.stderr
    assert "Traceback" not in result.stderr
