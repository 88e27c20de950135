"""When the first spoken audio of a streamed chat completion arrives, as the official SDK
sees it (the benchmarks and the tests that record it share this)."""

from __future__ import annotations

import time
from typing import Any

import openai


def streamed_first_audio_s(
    client: openai.OpenAI, body: dict[str, Any]
) -> tuple[float | None, float]:
    """(seconds to the first chunk with audio data or None, seconds to the end) of
    ``body`` (``stream: true``) sent by ``client``."""
    start = time.perf_counter()
    first_s = None
    for chunk in client.chat.completions.create(**body):
        audio = getattr(chunk.choices[0].delta, "audio", None) if chunk.choices else None
        if first_s is None and audio and getattr(audio, "data", None):
            first_s = time.perf_counter() - start
    return first_s, time.perf_counter() - start
