"""The Realtime input buffer on the session's audio clock."""

from __future__ import annotations

import asyncio

from omnivox.serving.realtime.audio_io import InputAudio


def test_a_span_ahead_of_the_audio_received_is_completed_with_silence() -> None:
    audio = InputAudio({"type": "audio/pcm", "rate": 24_000})
    pcm = bytes(range(1, 241)) * 20  # 100 ms of PCM16 at 24 kHz, no zero sample pair
    asyncio.run(audio.append(pcm))
    assert audio.now_ms == 100
    assert audio.span_ahead(20, 80) == audio.span(20, 80) == pcm[960:3840]
    ahead = audio.span_ahead(20, 130)  # 30 ms not come yet
    assert ahead[: len(pcm) - 960] == pcm[960:]
    assert ahead[len(pcm) - 960 :] == bytes(30 * 24 * 2)
    assert len(ahead) == 110 * 24 * 2
