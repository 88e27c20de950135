"""Encode 24 kHz mono s16le PCM into the API's output formats, chunk by chunk.

Each format has an incremental encoder (``encode(pcm)`` returns the bytes that are
ready, ``flush()`` finishes the file) in the ``ENCODERS`` registry keyed by the
format name. Formats whose muxer writes totals into the file header when it
finishes (wav sizes; flac sample count and MD5; the mp3 Xing/LAME frame that holds
the duration and the encoder delay) keep everything until ``flush``. Ogg Opus and
ADTS AAC are written forward only, so their bytes leave as soon as the muxer emits
them. This module does not know where the PCM comes from, base64, or HTTP.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial
from typing import Protocol

import av
import numpy as np

from omnivox.audio import OUTPUT_FORMATS, OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import S16_BYTES_PER_SAMPLE, s16le_to_float
from omnivox.errors import ServerError, UnsupportedValueError

MP3_BIT_RATE = 64_000  # bit/s; MPEG-2 layer III at 24 kHz mono
AAC_BIT_RATE = 64_000  # bit/s
OPUS_BIT_RATE = 32_000  # bit/s; transparent for speech at 24 kHz
# An ogg page leaves the muxer once it holds this much audio. FFmpeg's 1 s default
# delays streamed bytes by up to a second; 200 ms costs about 4 % in page headers.
OGG_PAGE_DURATION_US = 200_000
# Used only if a codec reports no fixed frame size.
FALLBACK_FRAME_SIZE = 1_024  # samples
# Sample formats we can build from s16 input, best first: integer keeps flac lossless.
FRAME_SAMPLE_FORMATS = ("s16", "s16p", "flt", "fltp")
FLOAT_SAMPLE_FORMATS = frozenset({"flt", "fltp"})
SILENT_SAMPLE = b"\x00\x00"
WAV_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
WAV_FORMAT_PCM = 1
UNKNOWN_WAV_SIZE = 0xFFFFFFFF  # the RIFF and data sizes of a WAV whose length is not known yet

MIME_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "flac": "audio/flac",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    # audio/L16 is big-endian (RFC 2586); little-endian raw PCM has no registered type.
    "pcm16": "audio/pcm",
}


class AudioEncoder(Protocol):
    """Turns a stream of 24 kHz mono s16le PCM into one file of some format."""

    def encode(self, pcm_s16le: bytes) -> bytes:
        """Feed PCM of any length; returns the encoded bytes ready so far (maybe b"")."""
        ...

    def flush(self) -> bytes:
        """Finish the file; returns the remaining bytes. Call once, after the last encode."""
        ...


class Pcm16Encoder:
    """Raw headerless PCM: the input is the output."""

    def encode(self, pcm_s16le: bytes) -> bytes:
        return bytes(pcm_s16le)

    def flush(self) -> bytes:
        return b""


class WavEncoder:
    """A RIFF/WAVE file (PCM, 1 channel, 24 kHz, 16 bit); its header needs the total size."""

    def __init__(self) -> None:
        self._pcm = bytearray()

    def encode(self, pcm_s16le: bytes) -> bytes:
        self._pcm += pcm_s16le
        return b""

    def flush(self) -> bytes:
        _check_whole_samples(len(self._pcm))
        return wav_header(len(self._pcm)) + bytes(self._pcm)


class StreamingWavEncoder:
    """A WAV file written as its PCM arrives: the header comes first, so its sizes say
    "unknown" (0xFFFFFFFF), as streamed WAV does; decoders read to the end of the data."""

    def __init__(self) -> None:
        self._started = False
        self._n_bytes = 0

    def encode(self, pcm_s16le: bytes) -> bytes:
        self._n_bytes += len(pcm_s16le)
        if self._started:
            return bytes(pcm_s16le)
        self._started = True
        return wav_header(UNKNOWN_WAV_SIZE) + bytes(pcm_s16le)

    def flush(self) -> bytes:
        _check_whole_samples(self._n_bytes)
        return b"" if self._started else wav_header(UNKNOWN_WAV_SIZE)


def wav_header(n_data_bytes: int, sample_rate: int = OUTPUT_SAMPLE_RATE) -> bytes:
    """The 44-byte header of a mono 16-bit PCM wav file (at the output rate unless told)."""
    block_align = S16_BYTES_PER_SAMPLE  # one channel
    return WAV_HEADER.pack(
        b"RIFF",
        min(WAV_HEADER.size - 8 + n_data_bytes, UNKNOWN_WAV_SIZE),
        b"WAVE",
        b"fmt ",
        16,
        WAV_FORMAT_PCM,
        1,
        sample_rate,
        sample_rate * block_align,
        block_align,
        8 * S16_BYTES_PER_SAMPLE,
        b"data",
        n_data_bytes,
    )


# Same PCM, same bytes (the ogg muxer otherwise picks a random stream serial), and no
# FFmpeg version string in the container.
BITEXACT = {"fflags": "+bitexact"}


@dataclass(frozen=True)
class AvFormat:
    """How one output format is made with FFmpeg."""

    muxer: str
    codecs: tuple[str, ...]  # encoder names, the first one available wins
    bit_rate: int | None  # bit/s; None for lossless
    streamable: bool  # the muxer never seeks back, so bytes may leave before flush
    opens_empty: bool  # FFmpeg can open the file when it holds no audio frame
    muxer_options: dict[str, str] = field(default_factory=lambda: dict(BITEXACT))


MP3 = AvFormat("mp3", ("libmp3lame",), MP3_BIT_RATE, streamable=False, opens_empty=False)
# The flac muxer otherwise reserves an 8 KiB padding block for later tag edits.
FLAC = AvFormat(
    "flac",
    ("flac",),
    None,
    streamable=False,
    opens_empty=True,
    muxer_options={**BITEXACT, "metadata_header_padding": "0"},
)
OPUS = AvFormat(
    "ogg",
    ("libopus", "opus"),
    OPUS_BIT_RATE,
    streamable=True,
    opens_empty=False,
    muxer_options={**BITEXACT, "page_duration": str(OGG_PAGE_DURATION_US)},
)
# ADTS rather than m4a: it streams, and it is what OpenAI returns for "aac". It has no
# place for the encoder delay, so decoders play 1024 samples (43 ms) of priming first.
AAC = AvFormat("adts", ("aac",), AAC_BIT_RATE, streamable=True, opens_empty=False)


class _AppendOnlySink:
    """A write-only file for PyAV; having no seek() tells FFmpeg never to patch old bytes."""

    def __init__(self) -> None:
        self._data = bytearray()

    def write(self, data: bytes) -> int:
        self._data += data
        return len(data)

    def take(self) -> bytes:
        data = bytes(self._data)
        self._data.clear()
        return data


class AvEncoder:
    """An ``AudioEncoder`` that runs one FFmpeg encoder and muxer through PyAV.

    PCM is cut into frames of the codec's frame size; the short last frame is sent
    as is at ``flush``, since every codec in use accepts one and records how much
    it padded, so the decoded file keeps its exact length.
    """

    def __init__(self, spec: AvFormat) -> None:
        self._spec = spec
        self._sink: _AppendOnlySink | io.BytesIO = (
            _AppendOnlySink() if spec.streamable else io.BytesIO()
        )
        self._container = av.open(
            self._sink, "w", format=spec.muxer, container_options=spec.muxer_options
        )
        self._stream = _add_audio_stream(self._container, spec)
        self._container.start_encoding()
        self._frame_size = self._stream.codec_context.frame_size or FALLBACK_FRAME_SIZE
        self._pending = bytearray()
        self._n_samples_sent = 0

    def encode(self, pcm_s16le: bytes) -> bytes:
        self._pending += pcm_s16le
        frame_bytes = self._frame_size * S16_BYTES_PER_SAMPLE
        n_ready_bytes = len(self._pending) - len(self._pending) % frame_bytes
        for start in range(0, n_ready_bytes, frame_bytes):
            self._encode_frame(bytes(self._pending[start : start + frame_bytes]))
        del self._pending[:n_ready_bytes]
        return self._take_ready()

    def flush(self) -> bytes:
        _check_whole_samples(len(self._pending))
        if self._n_samples_sent == 0 and not self._pending and not self._spec.opens_empty:
            # A header without one audio frame is no playable mp3, ogg opus or adts;
            # one sample of silence makes the shortest file that is.
            self._pending += SILENT_SAMPLE
        if self._pending:
            self._encode_frame(bytes(self._pending))
            self._pending.clear()
        self._container.mux(self._stream.encode(None))
        self._container.close()
        if isinstance(self._sink, io.BytesIO):
            return self._sink.getvalue()
        return self._sink.take()

    def _encode_frame(self, pcm_s16le: bytes) -> None:
        self._container.mux(self._stream.encode(self._make_frame(pcm_s16le)))

    def _make_frame(self, pcm_s16le: bytes) -> av.AudioFrame:
        sample_format = self._stream.format.name
        samples: np.ndarray
        if sample_format in FLOAT_SAMPLE_FORMATS:
            samples = s16le_to_float(pcm_s16le)
        else:
            samples = np.frombuffer(pcm_s16le, dtype="<i2").astype(np.int16)
        frame = av.AudioFrame.from_ndarray(
            samples.reshape(1, -1), format=sample_format, layout="mono"
        )
        frame.sample_rate = OUTPUT_SAMPLE_RATE
        frame.time_base = Fraction(1, OUTPUT_SAMPLE_RATE)
        frame.pts = self._n_samples_sent
        self._n_samples_sent += frame.samples
        return frame

    def _take_ready(self) -> bytes:
        if isinstance(self._sink, _AppendOnlySink):
            return self._sink.take()
        return b""


def _add_audio_stream(container: av.container.OutputContainer, spec: AvFormat) -> av.AudioStream:
    stream = container.add_stream(_pick_codec(spec.codecs), rate=OUTPUT_SAMPLE_RATE)
    if not isinstance(stream, av.AudioStream):
        raise ServerError(f"FFmpeg's {stream.codec_context.name} is not an audio encoder.")
    stream.layout = "mono"
    stream.format = _pick_sample_format(stream.codec_context.codec)
    if spec.bit_rate is not None:
        stream.bit_rate = spec.bit_rate
    return stream


def _pick_codec(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
        except av.codec.codec.UnknownCodecError:
            continue
        return name
    raise ServerError(f"This server's FFmpeg has none of the audio encoders {', '.join(names)}.")


def _pick_sample_format(codec: av.codec.Codec) -> str:
    supported = {sample_format.name for sample_format in codec.audio_formats or ()}
    for name in FRAME_SAMPLE_FORMATS:
        if name in supported:
            return name
    raise ServerError(f"The {codec.name} encoder takes none of {', '.join(FRAME_SAMPLE_FORMATS)}.")


def _check_whole_samples(n_bytes: int) -> None:
    if n_bytes % S16_BYTES_PER_SAMPLE:
        raise ValueError(f"PCM ended in the middle of a sample ({n_bytes} bytes pending)")


ENCODERS: dict[str, Callable[[], AudioEncoder]] = {
    "wav": WavEncoder,
    "mp3": partial(AvEncoder, MP3),
    "flac": partial(AvEncoder, FLAC),
    "opus": partial(AvEncoder, OPUS),
    "aac": partial(AvEncoder, AAC),
    "pcm16": Pcm16Encoder,
}


def make_encoder(fmt: str) -> AudioEncoder:
    """A fresh incremental encoder for output format ``fmt`` (one of ``OUTPUT_FORMATS``)."""
    try:
        factory = ENCODERS[fmt]
    except KeyError:
        supported = ", ".join(OUTPUT_FORMATS)
        raise UnsupportedValueError(
            f"Unsupported audio format {fmt!r}. Supported formats are: {supported}.",
            param="audio.format",
        ) from None
    return factory()


def make_stream_encoder(fmt: str) -> AudioEncoder:
    """Like ``make_encoder``, but each byte is returned as soon as the format allows:
    WAV's header goes first, with the sizes unknown."""
    if fmt == "wav":
        return StreamingWavEncoder()
    return make_encoder(fmt)


def encode_audio(fmt: str, pcm_s16le: bytes) -> bytes:
    """Encode a whole 24 kHz mono s16le signal into one file of format ``fmt``."""
    encoder = make_encoder(fmt)
    return encoder.encode(pcm_s16le) + encoder.flush()
