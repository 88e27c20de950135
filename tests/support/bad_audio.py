"""Damaged, lying and hostile input audio, made on demand (no binary assets).

Each case is built from numpy samples with the ``wave`` module, by patching or packing
RIFF headers with ``struct``, or with the ffmpeg CLI, and says what a server must do
with it: refuse it with a 400 of one error code, or answer having heard a known number
of seconds (by construction, or as the ffmpeg CLI decodes the same bytes). Every case
is described by its name; ``CASES`` maps the names to their builders, which need the
ffmpeg CLI on PATH and take well under a second each (the ten-hour file about one).
"""

from __future__ import annotations

import io
import random
import struct
import subprocess
import tempfile
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.support.media import ffmpeg_encode, tone_s16le

SAMPLE_RATE = 16_000
TONE_S = 2.0
# The server's default longest input (Settings.max_input_audio_s), and a rate that
# keeps a file of that length small: 600 s of 8-bit PCM at 8 kHz is 4.8 MB.
MAX_INPUT_AUDIO_S = 600
LIMIT_TEST_RATE = 8_000
TEN_HOURS_S = 36_000
# Offsets of header fields in a canonical 44-byte WAV (as the wave module writes it).
RIFF_SIZE_AT, CHANNELS_AT, RATE_AT, DATA_SIZE_AT = 4, 22, 24, 40
WAVE_FORMAT_IEEE_FLOAT = 3

UNSUPPORTED = "unsupported_format"
TOO_LONG = "audio_too_long"


@dataclass(frozen=True)
class BadAudio:
    data: bytes
    declared_format: str  # the input_audio.format the client sends with it
    refusal: str | None  # the 400's error code, or None: it must be answered
    heard_s: float | None = None  # for an answer: seconds of audio the server must hear


CASES: dict[str, Callable[[], BadAudio]] = {}


def case(build: Callable[[], BadAudio]) -> Callable[[], BadAudio]:
    CASES[build.__name__.replace("_", "-")] = build
    return build


def refused(data: bytes, code: str = UNSUPPORTED, declared_format: str = "wav") -> BadAudio:
    return BadAudio(data, declared_format, code)


def answered(data: bytes, heard_s: float, declared_format: str = "wav") -> BadAudio:
    return BadAudio(data, declared_format, None, heard_s)


def answered_as_ffmpeg_hears(data: bytes, declared_format: str) -> BadAudio:
    # Not checked: on a damaged file the CLI writes what it decoded, then exits with 1.
    pcm = subprocess.run(
        ["ffmpeg", "-v", "quiet", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        input=data,
        capture_output=True,
    ).stdout
    heard_s = len(pcm) / 2 / 16_000
    assert heard_s > 0.2, "the case would not test what it says"
    return answered(data, heard_s, declared_format)


def tone(duration_s: float = TONE_S, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A 440 Hz tone at half scale, float64."""
    t_s = np.arange(round(duration_s * sample_rate)) / sample_rate
    return 0.5 * np.sin(2 * np.pi * 440.0 * t_s)


def pcm_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, sample_width: int = 2) -> bytes:
    """A PCM WAV written by the wave module: ``samples`` in [-1, 1], shaped (n,) or
    (n, channels), in 16 bits or 8 (unsigned: silence is 128). A plain WAV of more
    than two channels names no positions for them."""
    n_channels = 1 if samples.ndim == 1 else samples.shape[1]
    if sample_width == 1:
        pcm = np.rint(samples * 127 + 128).astype(np.uint8)
    else:
        pcm = np.rint(samples * 32_767).astype("<i2")
    with io.BytesIO() as out:
        with wave.open(out, "wb") as wav:
            wav.setnchannels(n_channels)
            wav.setsampwidth(sample_width)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm.tobytes())
        return out.getvalue()


def on_channels(samples: np.ndarray, n_channels: int) -> np.ndarray:
    """The same mono ``samples`` on every one of ``n_channels``."""
    return np.repeat(samples[:, None], n_channels, axis=1)


def patched(wav: bytes, offset: int, fmt: str, value: int) -> bytes:
    """``wav`` with one header field overwritten (a header that lies)."""
    field = struct.pack(fmt, value)
    return wav[:offset] + field + wav[offset + len(field) :]


def float_wav(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A 32-bit float WAV (format 3, which the wave module can not write) of ``samples``,
    shaped (n,) or (n, channels)."""
    n_channels = 1 if samples.ndim == 1 else samples.shape[1]
    data = samples.astype("<f4").tobytes()
    block_bytes = 4 * n_channels
    fmt = struct.pack(
        "<4sIHHIIHH",
        *(b"fmt ", 16, WAVE_FORMAT_IEEE_FLOAT, n_channels),
        *(sample_rate, sample_rate * block_bytes, block_bytes, 32),
    )
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def ffmpeg_file(*args: str, stdin: bytes = b"") -> bytes:
    """What the ffmpeg CLI writes given ``args`` (to a real file, so that the muxers
    go back to fill in their headers as they would for an upload)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        subprocess.run(
            ["ffmpeg", "-v", "error", *args, str(out)], input=stdin, capture_output=True, check=True
        )
        return out.read_bytes()


def ffmpeg_wav(codec: str) -> bytes:
    """The tone in a WAV of another sample codec (pcm_mulaw, pcm_alaw)."""
    return ffmpeg_file(
        *("-f", "s16le", "-ar", str(SAMPLE_RATE), "-ac", "1", "-i", "-"),
        *("-c:a", codec, "-f", "wav"),
        stdin=tone_s16le(TONE_S, sample_rate=SAMPLE_RATE),
    )


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


# ---- truncated uploads ---------------------------------------------------------------


@case
def wav_cut_in_its_data() -> BadAudio:
    data = cut(pcm_wav(tone()), 0.5)
    return answered(data, (len(data) - 44) // 2 / SAMPLE_RATE)


@case
def wav_cut_in_its_header() -> BadAudio:
    return refused(pcm_wav(tone())[:30])


@case
def mp3_cut() -> BadAudio:
    return answered_as_ffmpeg_hears(cut(ffmpeg_encode(tone_s16le(TONE_S), "mp3"), 0.75), "mp3")


@case
def ogg_vorbis_cut() -> BadAudio:
    return answered_as_ffmpeg_hears(cut(ffmpeg_encode(tone_s16le(8.0), "ogg"), 0.6), "ogg")


@case
def ogg_opus_cut() -> BadAudio:
    return answered_as_ffmpeg_hears(cut(ffmpeg_encode(tone_s16le(8.0), "opus"), 0.6), "opus")


@case
def ogg_cut_before_its_first_audio_page() -> BadAudio:
    return refused(ffmpeg_encode(tone_s16le(TONE_S), "opus")[:120], declared_format="opus")


# ---- WAV headers that lie ------------------------------------------------------------


@case
def wav_data_size_beyond_the_file() -> BadAudio:
    wav = pcm_wav(tone())
    return answered(patched(wav, DATA_SIZE_AT, "<I", 10 * len(wav)), TONE_S)


@case
def wav_data_size_4_gib() -> BadAudio:
    # What recorders that stream a WAV write when they can not seek back to the header.
    return answered(patched(pcm_wav(tone()), DATA_SIZE_AT, "<I", 2**32 - 1), TONE_S)


@case
def wav_riff_size_4_gib() -> BadAudio:
    return answered(patched(pcm_wav(tone()), RIFF_SIZE_AT, "<I", 2**32 - 1), TONE_S)


@case
def wav_data_size_zero() -> BadAudio:
    return answered(patched(pcm_wav(tone()), DATA_SIZE_AT, "<I", 0), TONE_S)


@case
def wav_rate_4_ghz() -> BadAudio:
    return refused(patched(pcm_wav(tone()), RATE_AT, "<I", 2**32 - 1))


@case
def wav_rate_1_ghz() -> BadAudio:
    # 32 000 samples last 32 us at 1 GHz: less than one sample at 16 kHz.
    return refused(patched(pcm_wav(tone()), RATE_AT, "<I", 10**9))


@case
def wav_rate_zero() -> BadAudio:
    return refused(patched(pcm_wav(tone()), RATE_AT, "<I", 0))


@case
def wav_rate_1_hz() -> BadAudio:
    # 400 samples at 1 Hz: a 1 KB file that lasts 400 s.
    return answered(pcm_wav(tone(400 / SAMPLE_RATE), sample_rate=1), 400.0)


@case
def wav_rate_1_hz_longer_than_the_limit() -> BadAudio:
    return refused(pcm_wav(tone(700 / SAMPLE_RATE), sample_rate=1), TOO_LONG)


@case
def wav_zero_channels() -> BadAudio:
    return refused(patched(pcm_wav(tone()), CHANNELS_AT, "<H", 0))


# ---- unusual but valid WAV -----------------------------------------------------------


@case
def wav_zero_samples() -> BadAudio:
    return refused(pcm_wav(tone(0.0)))


@case
def wav_one_sample() -> BadAudio:
    return answered(pcm_wav(tone(1 / SAMPLE_RATE)), 1 / SAMPLE_RATE)


@case
def wav_8_channels() -> BadAudio:
    return answered(pcm_wav(on_channels(tone(), 8)), TONE_S)


@case
def wav_64_channels() -> BadAudio:
    return answered(pcm_wav(on_channels(tone(), 64)), TONE_S)


@case
def wav_192_khz() -> BadAudio:
    return answered(pcm_wav(tone(sample_rate=192_000), sample_rate=192_000), TONE_S)


@case
def wav_mu_law() -> BadAudio:
    return answered(ffmpeg_wav("pcm_mulaw"), TONE_S)


@case
def wav_a_law() -> BadAudio:
    return answered(ffmpeg_wav("pcm_alaw"), TONE_S)


@case
def wav_float_with_nan_and_inf() -> BadAudio:
    samples = tone().astype(np.float32)
    samples[::97] = np.nan
    samples[1::89] = np.inf
    samples[2::83] = -np.inf
    samples[3::79] = 3.4e38  # finite, but far past full scale
    return answered(float_wav(samples), TONE_S)


@case
def wav_exactly_the_limit() -> BadAudio:
    silence = np.zeros(MAX_INPUT_AUDIO_S * LIMIT_TEST_RATE)
    return answered(pcm_wav(silence, LIMIT_TEST_RATE, sample_width=1), MAX_INPUT_AUDIO_S)


@case
def wav_one_sample_over_the_limit() -> BadAudio:
    silence = np.zeros(MAX_INPUT_AUDIO_S * LIMIT_TEST_RATE + 1)
    return refused(pcm_wav(silence, LIMIT_TEST_RATE, sample_width=1), TOO_LONG)


# ---- not what it says it is ----------------------------------------------------------


@case
def random_bytes() -> BadAudio:
    return refused(random.Random(1).randbytes(50_000))


@case
def png_named_wav() -> BadAudio:
    png = ffmpeg_file(
        *("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1"),
        *("-c:v", "png", "-f", "image2"),
    )
    assert png.startswith(b"\x89PNG")
    return refused(png)


@case
def mp3_declared_as_wav() -> BadAudio:
    return answered_as_ffmpeg_hears(ffmpeg_encode(tone_s16le(TONE_S), "mp3"), "wav")


@case
def wav_declared_as_mp3() -> BadAudio:
    return answered(pcm_wav(tone()), TONE_S, "mp3")


@case
def ogg_with_only_a_video_stream() -> BadAudio:
    video = ffmpeg_file(
        *("-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=1"),
        *("-c:v", "libtheora", "-f", "ogg"),
    )
    return refused(video, declared_format="ogg")


@case
def mp4_with_no_audio_stream() -> BadAudio:
    video = ffmpeg_file(
        *("-f", "lavfi", "-i", "testsrc=size=32x32:rate=5:duration=1"),
        *("-c:v", "mpeg4", "-f", "mp4"),
    )
    return refused(video, declared_format="m4a")


@case
def hls_playlist_naming_a_server_file() -> BadAudio:
    # Demuxers that open other files (hls, concat) must never run on an upload.
    return refused(b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/hostname\n")


# ---- compressed silence that decodes to hours ----------------------------------------


@case
def ogg_opus_ten_hours_of_silence() -> BadAudio:
    # Ten seconds of silence encoded once, its packets repeated by a stream copy: ~9 MB.
    ten_s = ffmpeg_file(
        *("-f", "lavfi", "-i", "anullsrc=r=48000:cl=mono", "-t", "10"),
        *("-c:a", "libopus", "-b:a", "6k", "-frame_duration", "120", "-f", "ogg"),
    )
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "ten-seconds.ogg"
        source.write_bytes(ten_s)
        data = ffmpeg_file(
            *("-stream_loop", "-1", "-i", str(source), "-t", str(TEN_HOURS_S)),
            *("-c", "copy", "-f", "ogg"),
        )
    return refused(data, TOO_LONG, declared_format="opus")
