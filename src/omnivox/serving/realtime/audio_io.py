"""A session's audio in and out: the input buffer on the session's clock, and the answer's
audio in the session's output format.

``InputAudio`` keeps what the client appended since the last commit as PCM16 at the
format's rate (24 kHz for ``audio/pcm``; G.711 ``audio/pcmu``/``audio/pcma`` are
8 kHz and decoded on arrival), and counts every appended millisecond: that count is
the clock of ``audio_start_ms``/``audio_end_ms``. With turn detection on, each
append is also resampled to 16 kHz and scored by the streaming Silero VAD, which
returns one speech probability per 32 ms window with that window's place on the
clock. Changing the input format empties the buffer.

``OutputAudio`` turns the engines' 24 kHz PCM16 into the output format, resampling
to 8 kHz first for G.711.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from omnivox.audio import INPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE
from omnivox.audio.g711 import (
    G711_SAMPLE_RATE,
    alaw_to_s16le,
    s16le_to_alaw,
    s16le_to_ulaw,
    ulaw_to_s16le,
)
from omnivox.audio.pcm import StreamResampler, float_to_s16le, resample, s16le_to_float
from omnivox.engines.base import AudioClip
from omnivox.engines.vad import VAD_SAMPLE_RATE, WINDOW_SAMPLES, StreamingVad

S16_BYTES = 2
INLINE_VAD_S = 1.0  # longer appends are scored off the event loop


def format_rate(fmt: dict[str, Any]) -> int:
    return OUTPUT_SAMPLE_RATE if fmt.get("type") == "audio/pcm" else G711_SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class Window:
    probability: float
    start_ms: int
    end_ms: int


class InputAudio:
    def __init__(self, fmt: dict[str, Any]) -> None:
        self.fmt = fmt
        self.rate = format_rate(fmt)
        self.buffer = bytearray()
        self.start_ms = 0  # the clock at the buffer's first sample
        self._samples_in = 0  # samples appended at the current rate since the rate was set
        self._clock_origin_ms = 0  # the clock when the current rate was set
        self._vad: StreamingVad | None = None
        self._to_16k: StreamResampler | None = None
        self._windows = 0  # VAD windows scored since the VAD started
        self._vad_origin_ms = 0

    @property
    def now_ms(self) -> int:
        return self._clock_origin_ms + self._samples_in * 1000 // self.rate

    @property
    def buffered_ms(self) -> float:
        return len(self.buffer) / S16_BYTES / self.rate * 1000

    def set_format(self, fmt: dict[str, Any]) -> None:
        if fmt.get("type") == self.fmt.get("type"):
            return
        self._clock_origin_ms = self.now_ms
        self._samples_in = 0
        self.fmt = fmt
        self.rate = format_rate(fmt)
        self.clear()
        if self._vad is not None:
            self.start_vad()

    def decode(self, raw: bytes) -> bytes:
        kind = self.fmt.get("type")
        if kind == "audio/pcmu":
            return ulaw_to_s16le(raw)
        if kind == "audio/pcma":
            return alaw_to_s16le(raw)
        return raw[: len(raw) // S16_BYTES * S16_BYTES]

    async def append(self, pcm: bytes) -> list[Window]:
        """Add decoded PCM16 at ``rate``; the VAD's windows it completed (none when off)."""
        self.buffer += pcm
        self._samples_in += len(pcm) // S16_BYTES
        if self._vad is None or not pcm:
            return []
        if len(pcm) / S16_BYTES / self.rate > INLINE_VAD_S:
            probabilities = await asyncio.to_thread(self._score, pcm)
        else:
            probabilities = self._score(pcm)
        windows = []
        window_ms = WINDOW_SAMPLES * 1000 / VAD_SAMPLE_RATE
        for p in probabilities:
            start = self._vad_origin_ms + int(self._windows * window_ms)
            self._windows += 1
            windows.append(Window(p, start, self._vad_origin_ms + int(self._windows * window_ms)))
        return windows

    def _score(self, pcm: bytes) -> list[float]:
        assert self._vad is not None and self._to_16k is not None
        return self._vad.feed(self._to_16k.process(s16le_to_float(pcm)))

    def start_vad(self) -> None:
        self._vad = StreamingVad()
        self._to_16k = StreamResampler(self.rate, VAD_SAMPLE_RATE)
        self._windows = 0
        self._vad_origin_ms = self.now_ms

    def stop_vad(self) -> None:
        self._vad = None
        self._to_16k = None

    @property
    def vad_on(self) -> bool:
        return self._vad is not None

    def span(self, start_ms: int, end_ms: int) -> bytes:
        """The buffered PCM between two times of the clock (clipped to the buffer)."""
        return bytes(self.buffer[self._offset(start_ms) : self._offset(end_ms)])

    def span_ahead(self, start_ms: int, end_ms: int) -> bytes:
        """``span``, the part of it not received yet given as silence (zeros): the clip of a
        turn recognised before all of the silence it keeps has come."""
        missing = max(0, self._offset(end_ms) - len(self.buffer))
        return self.span(start_ms, end_ms) + bytes(missing)

    def _offset(self, ms: int) -> int:
        """Where a time of the clock falls in the buffer, in bytes (0 before its start)."""
        return max(0, (ms - self.start_ms) * self.rate // 1000) * S16_BYTES

    def clear(self) -> None:
        self.buffer.clear()
        self.start_ms = self.now_ms

    def drop_before(self, ms: int) -> None:
        """Forget the buffered audio before ``ms`` (silence nobody will commit)."""
        if ms <= self.start_ms:
            return
        n_bytes = min(len(self.buffer), (ms - self.start_ms) * self.rate // 1000 * S16_BYTES)
        del self.buffer[:n_bytes]
        self.start_ms += n_bytes // S16_BYTES * 1000 // self.rate


async def clip_of(pcm: bytes, rate: int) -> AudioClip:
    """PCM16 at ``rate`` as the clip an engine hears; the same audio is the same clip
    (its ``sha256``), so a turn recognised speculatively is not recognised again."""

    def convert() -> np.ndarray:
        return resample(s16le_to_float(pcm), rate, INPUT_SAMPLE_RATE)

    samples = await asyncio.to_thread(convert)
    digest = hashlib.sha256(pcm + rate.to_bytes(4, "little")).hexdigest()
    return AudioClip(samples, INPUT_SAMPLE_RATE, "realtime:" + digest)


def joined(parts: Sequence[AudioClip]) -> AudioClip:
    """Clips of ``clip_of``, one after another, as one clip (a turn heard in pieces, whole)."""
    digest = hashlib.sha256("".join(part.sha256 for part in parts).encode()).hexdigest()
    samples = np.concatenate([part.samples for part in parts])
    return AudioClip(samples, INPUT_SAMPLE_RATE, "realtime-joined:" + digest)


class OutputAudio:
    """The answer's 24 kHz PCM16 in the output format, piece by piece."""

    def __init__(self, fmt: dict[str, Any]) -> None:
        self.kind = fmt.get("type", "audio/pcm")
        self._to_8k = (
            StreamResampler(OUTPUT_SAMPLE_RATE, G711_SAMPLE_RATE)
            if self.kind != "audio/pcm"
            else None
        )

    def encode(self, pcm: bytes) -> bytes:
        if self._to_8k is None:
            return pcm
        return self._g711(self._to_8k.process(s16le_to_float(pcm)))

    def flush(self) -> bytes:
        if self._to_8k is None:
            return b""
        return self._g711(self._to_8k.flush())

    def _g711(self, samples: np.ndarray) -> bytes:
        pcm = float_to_s16le(samples)
        return s16le_to_ulaw(pcm) if self.kind == "audio/pcmu" else s16le_to_alaw(pcm)
