"""Encoders checked against an independent decoder: the ffmpeg and ffprobe command-line tools."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from omnivox.audio import (
    ENCODERS,
    MIME_TYPES,
    OUTPUT_FORMATS,
    OUTPUT_SAMPLE_RATE,
    encode_audio,
    float_to_s16le,
    make_encoder,
)
from omnivox.errors import UnsupportedValueError

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
    reason="ffmpeg/ffprobe not installed: they are the independent decoder these tests trust",
)

LOSSLESS_FORMATS = ("wav", "flac", "pcm16")
LOSSY_FORMATS = ("mp3", "opus", "aac")
CODEC_NAMES = {
    "wav": "pcm_s16le",
    "mp3": "mp3",
    "flac": "flac",
    "opus": "opus",
    "aac": "aac",
}
# Decoded length minus input length, in samples. mp3 keeps a little of LAME's end
# padding; ADTS has no room for the encoder delay, so 1024 samples of priming come
# first and the last frame is padded up to 1024.
EXTRA_SAMPLES = {"mp3": (0, 1_440), "opus": (0, 0), "aac": (1_024, 2_047)}
UNEVEN_PIECE_BYTES = (1_000, 7, 4_801, 2, 9_999, 1)
STEP_FREQUENCIES_HZ = (300.0, 500.0, 700.0, 900.0, 1_100.0)
STEP_DURATION_S = 0.25
AMPLITUDE = 0.5
MIN_CORRELATION = 0.98


def stepped_tone(duration_s: float) -> np.ndarray:
    """A tone whose pitch steps every 0.25 s, so a dropped or repeated chunk shows."""
    n_samples = round(duration_s * OUTPUT_SAMPLE_RATE)
    t_s = np.arange(n_samples) / OUTPUT_SAMPLE_RATE
    step = (t_s // STEP_DURATION_S).astype(int) % len(STEP_FREQUENCIES_HZ)
    frequency_hz = np.asarray(STEP_FREQUENCIES_HZ)[step]
    phase = 2 * np.pi * np.cumsum(frequency_hz) / OUTPUT_SAMPLE_RATE
    return (AMPLITUDE * np.sin(phase)).astype(np.float32)


def in_uneven_pieces(data: bytes) -> list[bytes]:
    pieces, start, i = [], 0, 0
    while start < len(data):
        size = UNEVEN_PIECE_BYTES[i % len(UNEVEN_PIECE_BYTES)]
        pieces.append(data[start : start + size])
        start, i = start + size, i + 1
    return pieces


def ffprobe_stream(data: bytes) -> dict[str, object]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", "-"],
        input=data,
        capture_output=True,
        check=True,
    )
    streams = json.loads(result.stdout)["streams"]
    assert len(streams) == 1
    stream: dict[str, object] = streams[0]
    return stream


def ffmpeg_decode(data: bytes, *, input_args: tuple[str, ...] = ()) -> np.ndarray:
    """Decode to 24 kHz mono s16 with the ffmpeg CLI; returns int16 samples."""
    result = subprocess.run(
        [
            *("ffmpeg", "-v", "error", *input_args, "-i", "-"),
            *("-f", "s16le", "-ac", "1", "-ar", str(OUTPUT_SAMPLE_RATE), "-"),
        ],
        input=data,
        capture_output=True,
        check=True,
    )
    return np.frombuffer(result.stdout, dtype="<i2")


def decode_any(fmt: str, data: bytes) -> np.ndarray:
    if fmt == "pcm16":
        raw = ("-f", "s16le", "-ar", str(OUTPUT_SAMPLE_RATE), "-ac", "1")
        return ffmpeg_decode(data, input_args=raw)
    return ffmpeg_decode(data)


def opus_input_sample_rate(data: bytes) -> int:
    # FFmpeg always decodes Opus at 48 kHz; the rate the file was made from is in OpusHead.
    head = data.index(b"OpusHead")
    return int.from_bytes(data[head + 12 : head + 16], "little")


def best_lag(decoded: np.ndarray, original: np.ndarray) -> int:
    """Where in the longer decoded signal the original starts (codec priming delays it)."""
    n_lags = len(decoded) - len(original) + 1
    size = len(decoded) + len(original)  # long enough that the circular correlation never wraps
    spectrum = np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(original, size))
    return int(np.argmax(np.fft.irfft(spectrum, size)[:n_lags]))


def test_every_output_format_has_an_encoder_and_a_mime_type() -> None:
    assert set(ENCODERS) == set(OUTPUT_FORMATS)
    assert set(MIME_TYPES) == set(OUTPUT_FORMATS)


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
@pytest.mark.parametrize("duration_s", [1.0, 2.37])
def test_incremental_encoding_gives_the_same_file_as_one_call(fmt: str, duration_s: float) -> None:
    pcm = float_to_s16le(stepped_tone(duration_s))
    encoder = make_encoder(fmt)
    parts = [encoder.encode(piece) for piece in in_uneven_pieces(pcm)]
    parts.append(encoder.flush())
    assert b"".join(parts) == encode_audio(fmt, pcm)


@pytest.mark.parametrize("fmt", ["opus", "aac", "pcm16"])
def test_streamable_formats_return_bytes_before_flush(fmt: str) -> None:
    encoder = make_encoder(fmt)
    pcm = float_to_s16le(stepped_tone(2.37))
    early = b"".join(encoder.encode(piece) for piece in in_uneven_pieces(pcm))
    late = encoder.flush()
    assert len(early) > len(late)


@pytest.mark.parametrize("fmt", [f for f in OUTPUT_FORMATS if f != "pcm16"])
@pytest.mark.parametrize("duration_s", [1.0, 2.37])
def test_files_are_24khz_mono(fmt: str, duration_s: float) -> None:
    data = encode_audio(fmt, float_to_s16le(stepped_tone(duration_s)))
    stream = ffprobe_stream(data)
    assert stream["codec_name"] == CODEC_NAMES[fmt]
    assert stream["channels"] == 1
    if fmt == "opus":
        assert opus_input_sample_rate(data) == OUTPUT_SAMPLE_RATE
    else:
        assert stream["sample_rate"] == str(OUTPUT_SAMPLE_RATE)


@pytest.mark.parametrize("fmt", LOSSLESS_FORMATS)
@pytest.mark.parametrize("duration_s", [1.0, 2.37])
def test_lossless_formats_decode_to_the_exact_samples(fmt: str, duration_s: float) -> None:
    pcm = float_to_s16le(stepped_tone(duration_s))
    decoded = decode_any(fmt, encode_audio(fmt, pcm))
    assert decoded.tobytes() == pcm


@pytest.mark.parametrize("fmt", LOSSY_FORMATS)
@pytest.mark.parametrize("duration_s", [1.0, 2.37])
def test_lossy_formats_keep_the_length_and_the_signal(fmt: str, duration_s: float) -> None:
    original = stepped_tone(duration_s)
    decoded = decode_any(fmt, encode_audio(fmt, float_to_s16le(original))) / 32_768.0
    low, high = EXTRA_SAMPLES[fmt]
    assert low <= len(decoded) - len(original) <= high
    lag = best_lag(decoded, original)
    aligned = decoded[lag : lag + len(original)]
    assert np.corrcoef(aligned, original)[0, 1] > MIN_CORRELATION


@pytest.mark.parametrize("fmt", OUTPUT_FORMATS)
def test_empty_input_gives_a_file_ffmpeg_opens_with_at_most_a_frame_of_silence(fmt: str) -> None:
    data = encode_audio(fmt, b"")
    if fmt == "pcm16":
        assert data == b""
        return
    assert ffprobe_stream(data)["channels"] == 1
    decoded = ffmpeg_decode(data)
    assert len(decoded) <= 2_048
    assert not decoded.any()


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_empty_input_holds_zero_samples_where_the_container_allows(fmt: str) -> None:
    assert len(ffmpeg_decode(encode_audio(fmt, b""))) == 0


def test_flac_has_no_padding_block() -> None:
    # FFmpeg reserves 8 KiB of padding in a flac header unless told not to.
    assert len(encode_audio("flac", b"")) < 1_024


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3"])
def test_pcm_ending_inside_a_sample_is_refused(fmt: str) -> None:
    encoder = make_encoder(fmt)
    encoder.encode(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="middle of a sample"):
        encoder.flush()


def test_unknown_format_is_an_unsupported_value() -> None:
    with pytest.raises(UnsupportedValueError) as caught:
        make_encoder("ogg")
    assert caught.value.param == "audio.format"
    assert "pcm16" in caught.value.message
