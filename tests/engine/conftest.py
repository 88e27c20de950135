"""Fixtures for the engine tier: the real cascade models, loaded once per session,
and spoken questions made by espeak-ng (a voice other than the engine's own)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from omnivox.audio import INPUT_SAMPLE_RATE, decode_audio
from omnivox.engines.base import AudioClip
from omnivox.engines.cascade.engine import CascadeEngine
from omnivox.settings import Settings
from tests.support.live_server import LiveServer, start_server

ESPEAK_ARGS = ("-v", "en-us", "-s", "140")  # slower than espeak's default: clearer words


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
async def cascade(models_dir: Path) -> AsyncIterator[CascadeEngine]:
    engine = CascadeEngine(Settings(cache_dir=models_dir, threads=2))
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture(scope="session")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], AudioClip]:
    """``spoken(text)``: ``text`` said by espeak-ng, decoded to a 16 kHz clip."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")

    def speak(text: str) -> AudioClip:
        wav_path = folder / f"{hashlib.sha256(text.encode()).hexdigest()[:16]}.wav"
        subprocess.run(["espeak-ng", *ESPEAK_ARGS, "-w", str(wav_path), text], check=True)
        data = wav_path.read_bytes()
        samples = decode_audio(data, sample_rate=INPUT_SAMPLE_RATE)
        return AudioClip(samples, INPUT_SAMPLE_RATE, hashlib.sha256(data).hexdigest())

    return speak


class LentEngine:
    """The session's cascade engine, lent to a server that must neither load nor close it."""

    def __init__(self, engine: CascadeEngine) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def lend(cascade: CascadeEngine, data_dir: Path) -> LiveServer:
    return start_server(LentEngine(cascade), data_dir)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def espeak(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., bytes]:
    """``espeak(text, voice="en-us")``: ``text`` said by espeak-ng, as WAV bytes."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (apt-get install espeak-ng)")
    folder = tmp_path_factory.mktemp("espeak")

    def say(text: str, voice: str = "en-us") -> bytes:
        path = folder / f"{hashlib.sha256((voice + text).encode()).hexdigest()[:16]}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), text], check=True)
        return path.read_bytes()

    return say
