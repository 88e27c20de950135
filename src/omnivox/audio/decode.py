"""Decode an uploaded audio file into mono float32 samples at one sample rate.

PyAV (FFmpeg) opens the bytes as one of a fixed list of audio containers, decodes
the first audio stream, mixes it down to one channel and resamples it. Every
failure becomes ``UnsupportedAudioFormatError``, and input longer than the
caller's limit becomes ``AudioTooLongError``, raised as soon as the limit is
passed rather than after decoding everything. This module does not know HTTP,
base64, which format names the API lets a client declare, or what the samples
are for.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction

import av
import numpy as np

from omnivox.audio import INPUT_SAMPLE_RATE
from omnivox.errors import AudioTooLongError, OmnivoxError, UnsupportedAudioFormatError

# FFmpeg demuxer names we open. Without a list FFmpeg would also probe playlist and
# concat demuxers (hls, concat), which open other files and URLs named in the input.
INPUT_CONTAINERS = ("wav", "mp3", "flac", "ogg", "matroska", "webm", "mov", "mp4", "m4a", "aac")
# For float output swresample adds every channel at -3 dB, so identical stereo
# channels come out 3 dB louder and loud input clips; a matrix normalised to a
# maximum of 1 makes stereo (L + R) / 2.
DOWNMIX_OPTIONS = {"rematrix_maxval": "1.0"}
# How many bytes of packets FFmpeg reads after the header to learn the streams'
# parameters (its default is 5 MB: a whole upload, read through Python, ~14 ms for
# 3 s of WAV). Every container here states them in its header, so one packet is
# enough (0.7 ms). Finding the format itself is a separate probe, left at its default.
STREAM_PROBE_BYTES = 4096
# The integer sample formats (packed names): the value of silence, and of full scale.
INTEGER_SCALES = {
    "u8": (2.0**7, 2.0**7),
    "s16": (0.0, 2.0**15),
    "s32": (0.0, 2.0**31),
    "s64": (0.0, 2.0**63),
}
FLOAT_FORMATS = ("flt", "dbl")
UNSUPPORTED_MESSAGE = "This model does not support the format you provided."
UNSUPPORTED_PARAM = "messages"


def decode_audio(
    data: bytes,
    *,
    sample_rate: int = INPUT_SAMPLE_RATE,
    max_duration_s: float | None = None,
) -> np.ndarray:
    """Decode ``data`` to float32 mono samples in [-1, 1] at ``sample_rate`` Hz.

    Raises ``AudioTooLongError`` once more than ``max_duration_s`` seconds have been
    decoded (None: no limit, so a tiny file of compressed silence can decode to hours),
    and ``UnsupportedAudioFormatError`` for anything that is not audio
    FFmpeg can read or that holds no samples.
    """
    try:
        samples = _decode(data, sample_rate, max_duration_s)
    except OmnivoxError:
        raise
    except Exception as exc:
        # On hostile input PyAV raises FFmpegError subclasses but also ValueError,
        # UnicodeDecodeError (metadata), IndexError and others; the set is not
        # documented, so every failure inside it is the client's unreadable file.
        raise _unsupported() from exc
    if samples.size == 0:
        raise _unsupported()
    return samples


def _decode(data: bytes, sample_rate: int, max_duration_s: float | None) -> np.ndarray:
    options = {
        "format_whitelist": ",".join(INPUT_CONTAINERS),
        "probesize": str(STREAM_PROBE_BYTES),
    }
    # Tags are never used; a badly encoded one must not make the audio unreadable.
    with av.open(
        io.BytesIO(data), "r", container_options=options, metadata_errors="replace"
    ) as container:
        if not container.streams.audio:
            raise _unsupported()
        stream = container.streams.audio[0]
        mixer = _MonoMixer(sample_rate)
        limit: _DurationLimit | None = None
        if max_duration_s is not None and math.isfinite(max_duration_s):  # inf: no limit
            limit = _DurationLimit(max_duration_s)
        for frame in _decoded_frames(container, stream):
            # Counted at the source rate, so the limit does not depend on the resampler.
            if limit is not None and limit.passed_after(frame.samples, frame.sample_rate):
                raise _too_long(limit.max_duration_s)
            mixer.push(frame)
        return mixer.finish()


class _DurationLimit:
    """Counts decoded time exactly, in whole samples per run of one sample rate.

    Adding ``samples / sample_rate`` in floats drifts upward (2083 frames of 4608 samples
    at 16 kHz sum to 600.0000000000168 s), which refused audio of exactly the limit.
    The limit is taken as written in decimal, so that 0.3 s admits 4800 samples at 16 kHz.
    """

    def __init__(self, max_duration_s: float) -> None:
        self.max_duration_s = max_duration_s
        self._left_s = Fraction(str(max_duration_s))
        self._sample_rate = 0
        self._n_samples = 0  # in the current run of ``_sample_rate``
        self._max_samples = 0

    def passed_after(self, n_samples: int, sample_rate: int) -> bool:
        """Whether the limit is passed once ``n_samples`` more have been decoded."""
        if sample_rate != self._sample_rate:  # a chained stream changed rate
            if self._sample_rate:
                self._left_s -= Fraction(self._n_samples, self._sample_rate)
            self._sample_rate, self._n_samples = sample_rate, 0
            self._max_samples = math.floor(self._left_s * sample_rate)
        self._n_samples += n_samples
        return self._n_samples > self._max_samples


def _decoded_frames(
    container: av.container.InputContainer, stream: av.AudioStream
) -> Iterator[av.AudioFrame]:
    """Yield the stream's frames the way the ffmpeg command line reads a damaged file.

    A packet that fails to decode is skipped, and a read error ends the input, so a
    truncated upload still gives the audio it holds.
    """
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except (StopIteration, av.FFmpegError):
            break
        yield from _usable(_decode_packet(stream, packet))
    # After a read error the decoder still holds frames; after a clean end this is a no-op.
    yield from _usable(_decode_packet(stream, None))


def _decode_packet(stream: av.AudioStream, packet: av.Packet | None) -> list[av.AudioFrame]:
    try:
        return list(stream.decode(packet))
    except av.FFmpegError:
        return []


def _usable(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    return (frame for frame in frames if frame.samples > 0 and frame.sample_rate > 0)


class _MonoMixer:
    """Turns decoded frames of any layout, sample format and rate into one float32 array.

    PyAV's resampler is fixed to the first frame's input parameters; a stream whose
    parameters change midway (chained mp3 or ogg) gets a fresh resampler per run.
    Two kinds of frame are made safe for it first, in numpy: more than two channels
    without positions (a WAV's "9 channels"), which it mixes with guessed positions for
    some counts and refuses for most, are averaged (one or two it takes as mono or
    stereo); and NaN or infinite float samples become silence, since its filter would
    smear them over the neighbouring samples.
    """

    def __init__(self, sample_rate: int) -> None:
        self.sample_rate = sample_rate
        self._resampler: av.AudioResampler | None = None
        self._input_key: tuple[str, str, int] | None = None
        self._prepare: Callable[[av.AudioFrame], av.AudioFrame] = _unchanged
        self._chunks: list[np.ndarray] = []

    def push(self, frame: av.AudioFrame) -> None:
        key = (frame.format.name, frame.layout.name, frame.sample_rate)
        if self._resampler is None or key != self._input_key:
            self._drain()
            self._resampler = av.AudioResampler(
                format="flt", layout="mono", rate=self.sample_rate, options=DOWNMIX_OPTIONS
            )
            self._input_key = key
            self._prepare = _preparation(frame)  # it depends only on the key
        self._collect(self._resampler.resample(self._prepare(frame)))

    def finish(self) -> np.ndarray:
        self._drain()
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        samples = np.concatenate(self._chunks)
        # Float decoders overshoot past full scale, and on damaged input can emit NaN.
        np.nan_to_num(samples, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(samples, -1.0, 1.0, out=samples)

    def _drain(self) -> None:
        if self._resampler is not None:
            self._collect(self._resampler.resample(None))

    def _collect(self, frames: Iterable[av.AudioFrame | None]) -> None:
        # A pass-through resampler answers a flush with [None].
        for frame in frames:
            if frame is not None:
                self._chunks.append(frame.to_ndarray().reshape(-1).astype(np.float32, copy=False))


def _preparation(frame: av.AudioFrame) -> Callable[[av.AudioFrame], av.AudioFrame]:
    """What a run of frames like ``frame`` needs before the resampler (see ``_MonoMixer``)."""
    layout = frame.layout
    if layout.nb_channels > 2 and "NONE" in (channel.name for channel in layout.channels):
        return _channel_mean
    if frame.format.packed.name in FLOAT_FORMATS:
        return _finite
    return _unchanged


def _unchanged(frame: av.AudioFrame) -> av.AudioFrame:
    return frame


def _channel_mean(frame: av.AudioFrame) -> av.AudioFrame:
    """A mono float frame: the mean of ``frame``'s channels, scaled to [-1, 1]."""
    fmt = frame.format.packed.name
    n_channels = frame.layout.nb_channels
    planes: np.ndarray = frame.to_ndarray()
    # Planar frames come as (channels, samples), packed ones as (1, samples * channels).
    if frame.format.is_planar:
        by_sample = planes.reshape(n_channels, -1).T
    else:
        by_sample = planes.reshape(-1, n_channels)
    if fmt in FLOAT_FORMATS and not np.isfinite(by_sample).all():
        by_sample = np.nan_to_num(by_sample, nan=0.0, posinf=0.0, neginf=0.0)
    zero, full_scale = INTEGER_SCALES.get(fmt, (0.0, 1.0))
    # A product with equal weights: numpy's mean across a short axis is ~5x slower.
    weights = np.full(n_channels, 1.0 / (n_channels * full_scale), np.float32)
    mono = by_sample.astype(np.float32) @ weights
    if zero:
        mono -= np.float32(zero / full_scale)
    return _frame_like(frame, mono.reshape(1, -1), "flt", "mono")


def _finite(frame: av.AudioFrame) -> av.AudioFrame:
    """``frame``, or a copy of it whose NaN and infinite samples are silence."""
    planes = frame.to_ndarray()
    if np.isfinite(planes).all():
        return frame
    np.nan_to_num(planes, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return _frame_like(frame, planes, frame.format.name, frame.layout)


def _frame_like(
    frame: av.AudioFrame, planes: np.ndarray, fmt: str, layout: str | av.AudioLayout
) -> av.AudioFrame:
    made = av.AudioFrame.from_ndarray(planes, format=fmt, layout=layout)
    made.sample_rate = frame.sample_rate
    made.pts = frame.pts
    made.time_base = frame.time_base
    return made


def _unsupported() -> UnsupportedAudioFormatError:
    return UnsupportedAudioFormatError(UNSUPPORTED_MESSAGE, param=UNSUPPORTED_PARAM)


def _too_long(max_duration_s: float) -> AudioTooLongError:
    limit = f"{max_duration_s:g} s"
    return AudioTooLongError(
        f"Input audio is too long: more than {limit}. "
        f"The longest input this server accepts is {limit}."
    )
