"""Raw PCM helpers: sample-format conversion and resampling of mono float32 audio.

Samples are numpy float32 arrays in [-1, 1], one channel; bytes are signed 16-bit
little-endian ("s16le"). This module knows nothing of containers, codecs or which
sample rate the rest of omnivox uses; callers pass every rate in.
"""

from __future__ import annotations

import numpy as np
import soxr

S16_BYTES_PER_SAMPLE = 2
# Scaling by 2**15 both ways makes s16 -> float -> s16 exact; +1.0 clips to 32767.
S16_SCALE = 32_768.0
S16_MIN = -32_768
S16_MAX = 32_767
RESAMPLE_QUALITY = "HQ"


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample mono float32 ``samples`` from ``from_rate`` Hz to ``to_rate`` Hz in one call."""
    samples = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return samples
    resampled: np.ndarray = soxr.resample(samples, from_rate, to_rate, quality=RESAMPLE_QUALITY)
    return resampled.astype(np.float32, copy=False)


def float_to_s16le(samples: np.ndarray) -> bytes:
    """Clip float samples to [-1, 1] and round them to signed 16-bit little-endian bytes."""
    scaled = np.rint(np.asarray(samples, dtype=np.float32) * S16_SCALE)
    return np.clip(scaled, S16_MIN, S16_MAX).astype("<i2").tobytes()


def s16le_to_float(data: bytes) -> np.ndarray:
    """Turn signed 16-bit little-endian bytes into float32 samples in [-1, 1)."""
    if len(data) % S16_BYTES_PER_SAMPLE:
        raise ValueError(f"s16le data must be whole 2-byte samples, got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.float32) / np.float32(S16_SCALE)


def duration_s(n_samples: int, sample_rate: int) -> float:
    """How long ``n_samples`` samples last at ``sample_rate`` Hz, in seconds."""
    return n_samples / sample_rate


class StreamResampler:
    """Resample a mono float32 stream chunk by chunk, with no clicks at chunk borders.

    The filter state carries over from one ``process`` call to the next, so the
    concatenated output equals what one ``resample`` call on the whole signal
    gives. Call ``flush`` once at the end for the samples still in the filter.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream: soxr.ResampleStream | None = None
        if from_rate != to_rate:
            self._stream = soxr.ResampleStream(
                from_rate, to_rate, 1, dtype="float32", quality=RESAMPLE_QUALITY
            )

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Feed the next chunk; returns the output samples that are ready (maybe none)."""
        samples = np.asarray(samples, dtype=np.float32)
        if self._stream is None:
            return samples
        out: np.ndarray = self._stream.resample_chunk(samples)
        return out.astype(np.float32, copy=False)

    def flush(self) -> np.ndarray:
        """End the stream; returns the samples still held by the filter."""
        empty = np.zeros(0, dtype=np.float32)
        if self._stream is None:
            return empty
        out: np.ndarray = self._stream.resample_chunk(empty, last=True)
        return out.astype(np.float32, copy=False)
