"""Speech as vLLM-Omni sends it, turned into the engine's 24 kHz s16le pieces.

vLLM-Omni writes each piece of speech with soundfile: a whole wav file (RIFF header,
``fmt `` and ``data`` chunks, 16-bit PCM) per piece, base64-encoded, at the rate the
model speaks (24 kHz for Qwen2.5-Omni and Qwen3-Omni). A server asked for ``pcm16``
sends the samples alone, and a streaming server may send one header followed by bare
samples; both are read here: a piece that does not begin with ``RIFF`` continues the
format last seen (24 kHz 16-bit mono until a header says otherwise).

``WavPieces.feed`` takes the decoded bytes of one piece and returns the s16le bytes
ready at the output rate (whole samples; resampled when the model's rate differs);
``flush`` returns what the resampler still holds at the end.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from omnivox.audio import OUTPUT_SAMPLE_RATE, StreamResampler, float_to_s16le
from omnivox.errors import UpstreamError

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
UNKNOWN_SIZES = frozenset({0, 0xFFFFFFFF})  # a streaming writer's placeholder sizes
RIFF_HEADER = struct.Struct("<4sI4s")
CHUNK_HEADER = struct.Struct("<4sI")
FMT = struct.Struct("<HHIIHH")


@dataclass(frozen=True, slots=True)
class SampleFormat:
    sample_rate: int = OUTPUT_SAMPLE_RATE
    channels: int = 1
    bits: int = 16
    is_float: bool = False

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.bits // 8


class WavPieces:
    def __init__(self) -> None:
        self.format = SampleFormat()
        self._pending = b""  # bytes of a frame split across pieces
        self._resampler: StreamResampler | None = None

    def feed(self, data: bytes) -> bytes:
        if data[:4] == b"RIFF":
            self.format, data = parse_wav(data)
            self._pending = b""
        data = self._pending + data
        whole = len(data) - len(data) % self.format.frame_bytes
        self._pending = data[whole:]
        samples = to_mono_float(data[:whole], self.format)
        return float_to_s16le(self._resample(samples))

    def flush(self) -> bytes:
        if self._resampler is None:
            return b""
        return float_to_s16le(self._resampler.flush())

    def _resample(self, samples: np.ndarray) -> np.ndarray:
        rate = self.format.sample_rate
        if rate == OUTPUT_SAMPLE_RATE and self._resampler is None:
            return samples
        if self._resampler is None or self._resampler.from_rate != rate:
            self._resampler = StreamResampler(rate, OUTPUT_SAMPLE_RATE)
        return self._resampler.process(samples)


def parse_wav(data: bytes) -> tuple[SampleFormat, bytes]:
    """The sample format of a wav file and the bytes of its ``data`` chunk (all that
    follows the chunk's header when its size is a streaming placeholder)."""
    if len(data) < RIFF_HEADER.size or data[8:12] != b"WAVE":
        raise _bad("a RIFF file that is not WAVE")
    offset = RIFF_HEADER.size
    fmt: SampleFormat | None = None
    while offset + CHUNK_HEADER.size <= len(data):
        name, size = CHUNK_HEADER.unpack_from(data, offset)
        body = offset + CHUNK_HEADER.size
        if name == b"fmt ":
            fmt = _sample_format(data[body : body + size])
        elif name == b"data":
            if fmt is None:
                raise _bad("a wav file whose data comes before its format")
            end = len(data) if size in UNKNOWN_SIZES else min(len(data), body + size)
            return fmt, data[body:end]
        offset = body + size + size % 2  # chunks are padded to even sizes
    raise _bad("a wav file without a data chunk")


def _sample_format(body: bytes) -> SampleFormat:
    if len(body) < FMT.size:
        raise _bad("a wav file with a short format chunk")
    tag, channels, rate, _, _, bits = FMT.unpack_from(body)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack_from("<H", body, 24)[0]  # the sub-format GUID's first field
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT) or channels < 1 or rate < 1:
        raise _bad(f"wav audio of format {tag}, {channels} channels at {rate} Hz")
    is_float = tag == WAVE_FORMAT_IEEE_FLOAT
    if bits not in ((32, 64) if is_float else (16, 24, 32)):
        raise _bad(f"wav audio of {bits}-bit {'float' if is_float else 'integer'} samples")
    return SampleFormat(rate, channels, bits, is_float)


def to_mono_float(data: bytes, fmt: SampleFormat) -> np.ndarray:
    """Whole frames of ``fmt`` as mono float32 samples in [-1, 1]."""
    if fmt.is_float:
        samples = np.frombuffer(data, dtype="<f4" if fmt.bits == 32 else "<f8")
    elif fmt.bits == 16:
        samples = np.frombuffer(data, dtype="<i2") / 32_768.0
    elif fmt.bits == 32:
        samples = np.frombuffer(data, dtype="<i4") / 2_147_483_648.0
    else:  # 24-bit: three little-endian bytes, sign-extended through the top byte
        raw = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        packed = raw[:, 0] << 8 | raw[:, 1] << 16 | raw[:, 2] << 24
        samples = packed / 2_147_483_648.0
    samples = np.asarray(samples, dtype=np.float32)
    if fmt.channels > 1:
        samples = samples.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return samples


def _bad(what: str) -> UpstreamError:
    return UpstreamError(f"The speech-to-speech model's upstream sent {what}.")
