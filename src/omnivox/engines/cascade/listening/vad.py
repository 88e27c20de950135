"""Find the speech in a clip with the Silero VAD model that faster-whisper ships.

``speech_chunks`` drops the silence around and between utterances and splits
long input into chunks of at most ``MAX_CHUNK_S`` seconds (Whisper hears 30 s
at a time), cutting in pauses where it can. It runs through onnxruntime on the
CPU (real-time factor ~0.004) and needs no model file of its own.

This module knows nothing of recognition: it only returns 16 kHz samples.
"""

from __future__ import annotations

import numpy as np

VAD_SAMPLE_RATE = 16_000
MAX_CHUNK_S = 28.0
MIN_SILENCE_MS = 500
SPEECH_PAD_MS = 200


def load_vad() -> None:
    """Load the VAD model now (it is loaded once per process and shared)."""
    from faster_whisper.vad import get_vad_model

    get_vad_model()


def speech_chunks(samples: np.ndarray, *, max_chunk_s: float = MAX_CHUNK_S) -> list[np.ndarray]:
    """The speech in mono float32 ``samples`` at 16 kHz, as chunks; [] when there is none."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    samples = np.asarray(samples, dtype=np.float32)
    if samples.size == 0:
        return []
    options = VadOptions(
        min_silence_duration_ms=MIN_SILENCE_MS,
        speech_pad_ms=SPEECH_PAD_MS,
        max_speech_duration_s=max_chunk_s,
    )
    stamps = get_speech_timestamps(samples, options, sampling_rate=VAD_SAMPLE_RATE)
    if not stamps:
        return []
    chunks, _ = collect_chunks(
        samples, stamps, sampling_rate=VAD_SAMPLE_RATE, max_duration=max_chunk_s
    )
    return [chunk for chunk in chunks if chunk.size > 0]
