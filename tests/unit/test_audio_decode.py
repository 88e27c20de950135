"""decode_audio on files made by the ffmpeg command-line tool, and on garbage."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import omnivox.audio.decode as decode_module
from omnivox.audio import OUTPUT_FORMATS, decode_audio, encode_audio, float_to_s16le
from omnivox.errors import AudioTooLongError, UnsupportedAudioFormatError
from tests.support import bad_audio

pytestmark = pytest.mark.skipif(
    shutil.which("ffmpeg") is None,
    reason="ffmpeg not installed: it makes the test files in formats omnivox does not write",
)

SOURCE_SAMPLE_RATE = 44_100
SIGNAL_DURATION_S = 2.5
TONE_HZ = 440.0
AMPLITUDE = 0.5
# Containers and the ffmpeg arguments that make them; lossy codecs add priming and padding.
CONTAINERS = {
    "wav": ("-c:a", "pcm_s16le", "-f", "wav"),
    "mp3": ("-c:a", "libmp3lame", "-f", "mp3"),
    "flac": ("-c:a", "flac", "-f", "flac"),
    "ogg-vorbis": ("-c:a", "libvorbis", "-f", "ogg"),
    "ogg-opus": ("-c:a", "libopus", "-f", "ogg"),
    "webm-opus": ("-c:a", "libopus", "-f", "webm"),
    "m4a-aac": ("-c:a", "aac", "-f", "ipod"),
}
LOSSLESS = ("wav", "flac")
LENGTH_TOLERANCE_S = 0.06
FUZZ_SEED = 20_240_601


def tone(duration_s: float, sample_rate: int, frequency_hz: float = TONE_HZ) -> np.ndarray:
    t_s = np.arange(round(duration_s * sample_rate)) / sample_rate
    return (AMPLITUDE * np.sin(2 * np.pi * frequency_hz * t_s)).astype(np.float32)


def ffmpeg_encode(samples: np.ndarray, sample_rate: int, args: tuple[str, ...]) -> bytes:
    """Encode float32 samples, shape (n,) or (n, channels), with the ffmpeg CLI.

    Written to a real file, because the mp4 muxer can not finish a file on a pipe.
    """
    n_channels = 1 if samples.ndim == 1 else samples.shape[1]
    pcm = np.clip(np.rint(samples * 32_767), -32_768, 32_767).astype("<i2").tobytes()
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "encoded"
        subprocess.run(
            [
                *("ffmpeg", "-v", "error", "-f", "s16le"),
                *("-ar", str(sample_rate), "-ac", str(n_channels), "-i", "-"),
                *(*args, str(out_path)),
            ],
            input=pcm,
            capture_output=True,
            check=True,
        )
        return out_path.read_bytes()


def dominant_frequency_hz(samples: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / sample_rate)[np.argmax(spectrum)])


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    signal = tone(SIGNAL_DURATION_S, SOURCE_SAMPLE_RATE)
    return {
        name: ffmpeg_encode(signal, SOURCE_SAMPLE_RATE, args) for name, args in CONTAINERS.items()
    }


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("sample_rate", [16_000, 24_000])
def test_decodes_every_container_to_the_tone_at_the_asked_rate(
    files: dict[str, bytes], container: str, sample_rate: int
) -> None:
    samples = decode_audio(files[container], sample_rate=sample_rate)
    assert samples.dtype == np.float32
    assert samples.ndim == 1
    assert abs(len(samples) / sample_rate - SIGNAL_DURATION_S) <= LENGTH_TOLERANCE_S
    assert dominant_frequency_hz(samples, sample_rate) == pytest.approx(TONE_HZ, abs=1.0)
    assert rms(samples) == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.05)


@pytest.mark.parametrize("container", LOSSLESS)
def test_lossless_input_at_the_target_rate_keeps_its_samples(container: str) -> None:
    signal = tone(1.0, 16_000)
    data = ffmpeg_encode(signal, 16_000, CONTAINERS[container])
    np.testing.assert_allclose(decode_audio(data, sample_rate=16_000), signal, atol=1 / 32_767)


def test_float_input_already_mono_at_the_target_rate_passes_through() -> None:
    signal = tone(1.0, 16_000)
    data = ffmpeg_encode(signal, 16_000, ("-c:a", "pcm_f32le", "-f", "wav"))
    np.testing.assert_allclose(decode_audio(data, sample_rate=16_000), signal, atol=1 / 32_767)


@pytest.mark.parametrize("fmt", [f for f in OUTPUT_FORMATS if f != "pcm16"])
def test_every_file_omnivox_writes_it_can_read_back(fmt: str) -> None:
    data = encode_audio(fmt, float_to_s16le(tone(1.0, 24_000)))
    samples = decode_audio(data, sample_rate=24_000)
    assert abs(len(samples) / 24_000 - 1.0) <= 0.1  # ADTS aac leads with 43 ms of priming
    assert dominant_frequency_hz(samples, 24_000) == pytest.approx(TONE_HZ, abs=1.0)


@pytest.mark.parametrize("container", ["mp3", "m4a-aac"])
def test_a_tag_far_larger_than_the_stream_probe_does_not_hide_the_audio(container: str) -> None:
    # The streams' parameters are read from one packet (STREAM_PROBE_BYTES); a file that
    # opens with 64 KB of tags (cover art, lyrics) must still be found and decoded.
    assert decode_module.STREAM_PROBE_BYTES < 65_536
    args = ("-metadata", "lyrics=" + "la " * 21_846, *CONTAINERS[container])
    data = ffmpeg_encode(tone(1.0, 16_000), 16_000, args)
    assert len(data) > 65_536
    samples = decode_audio(data, sample_rate=16_000)
    assert abs(len(samples) / 16_000 - 1.0) <= LENGTH_TOLERANCE_S
    assert dominant_frequency_hz(samples, 16_000) == pytest.approx(TONE_HZ, abs=1.0)


def test_a_tag_that_is_not_utf8_does_not_make_the_audio_unreadable() -> None:
    pcm = np.zeros(1_600, "<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16_000, 32_000, 2, 16)
    title = b"INAM" + struct.pack("<I", 4) + b"\xe4\xff\xfe\x00"
    info = b"LIST" + struct.pack("<I", 4 + len(title)) + b"INFO" + title
    body = b"WAVE" + fmt + info + b"data" + struct.pack("<I", len(pcm)) + pcm
    wav = b"RIFF" + struct.pack("<I", len(body)) + body
    assert len(decode_audio(wav)) == 1_600


def test_default_rate_is_16khz(files: dict[str, bytes]) -> None:
    assert len(decode_audio(files["wav"])) == round(SIGNAL_DURATION_S * 16_000)


def test_stereo_is_mixed_down_not_cut_to_the_left_channel() -> None:
    right_only = np.stack([np.zeros(24_000, np.float32), tone(1.0, 24_000)], axis=1)
    data = ffmpeg_encode(right_only, 24_000, CONTAINERS["wav"])
    samples = decode_audio(data, sample_rate=24_000)
    assert len(samples) == 24_000
    # (L + R) / 2: half the amplitude, and no louder than the loudest channel.
    assert rms(samples) == pytest.approx(AMPLITUDE / 2 / np.sqrt(2), rel=0.02)


def test_identical_stereo_channels_keep_their_level() -> None:
    mono = tone(1.0, 24_000)
    data = ffmpeg_encode(np.stack([mono, mono], axis=1), 24_000, CONTAINERS["wav"])
    np.testing.assert_allclose(decode_audio(data, sample_rate=24_000), mono, atol=1 / 32_767)


def test_a_mid_stream_rate_change_keeps_both_parts() -> None:
    mp3 = CONTAINERS["mp3"]
    chained = ffmpeg_encode(tone(1.0, 44_100), 44_100, mp3) + ffmpeg_encode(
        tone(1.0, 22_050, 880.0), 22_050, mp3
    )
    samples = decode_audio(chained, sample_rate=16_000)
    assert abs(len(samples) / 16_000 - 2.0) <= 2 * LENGTH_TOLERANCE_S
    assert dominant_frequency_hz(samples[4_000:12_000], 16_000) == pytest.approx(440, abs=2)
    assert dominant_frequency_hz(samples[20_000:28_000], 16_000) == pytest.approx(880, abs=2)


def count_decoded_seconds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A one-item list that counts the seconds the decoder hands to its mixer."""
    decoded_s = [0.0]

    class CountingMixer(decode_module._MonoMixer):
        def push(self, frame: object) -> None:
            decoded_s[0] += frame.samples / frame.sample_rate  # type: ignore[attr-defined]
            super().push(frame)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_module, "_MonoMixer", CountingMixer)
    return decoded_s


@pytest.mark.parametrize("container", ["wav", "mp3"])
def test_too_long_input_is_refused_after_decoding_only_the_limit(
    monkeypatch: pytest.MonkeyPatch, container: str
) -> None:
    data = ffmpeg_encode(tone(60.0, 16_000), 16_000, CONTAINERS[container])
    decoded_s = count_decoded_seconds(monkeypatch)
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(data, max_duration_s=1.0)
    assert 0.5 < decoded_s[0] <= 1.0
    assert caught.value.code == "audio_too_long"
    assert "1 s" in caught.value.message


def test_input_exactly_at_the_limit_is_accepted(files: dict[str, bytes]) -> None:
    samples = decode_audio(files["wav"], max_duration_s=SIGNAL_DURATION_S)
    assert len(samples) == round(SIGNAL_DURATION_S * 16_000)


@pytest.mark.parametrize(
    ("sample_rate", "limit_s"),
    [(16_000, 2.5), (8_000, 30.0), (24_000, 1.1), (16_000, 0.3), (16_000, 600.0)],
)
def test_the_limit_admits_exactly_its_length_and_refuses_one_sample_more(
    sample_rate: int, limit_s: float
) -> None:
    # Frame durations summed in floats drift past the limit, so audio of exactly the
    # limit used to be refused (all these but 0.3 s); 0.3 s is not exact in binary.
    n_samples = round(limit_s * sample_rate)
    exact = bad_audio.pcm_wav(np.zeros(n_samples), sample_rate)
    assert len(decode_audio(exact, sample_rate=sample_rate, max_duration_s=limit_s)) == n_samples
    with pytest.raises(AudioTooLongError):
        decode_audio(
            bad_audio.pcm_wav(np.zeros(n_samples + 1), sample_rate), max_duration_s=limit_s
        )


def test_the_limit_holds_across_a_mid_stream_rate_change() -> None:
    mp3 = CONTAINERS["mp3"]
    chained = ffmpeg_encode(tone(1.0, 44_100), 44_100, mp3) + ffmpeg_encode(
        tone(1.0, 22_050), 22_050, mp3
    )
    assert abs(len(decode_audio(chained, max_duration_s=2.5)) / 16_000 - 2.0) <= 0.1
    with pytest.raises(AudioTooLongError):
        decode_audio(chained, max_duration_s=1.5)


def test_ten_hours_of_compressed_silence_is_refused_after_decoding_only_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bad_audio.CASES["ogg-opus-ten-hours-of-silence"]().data
    assert len(data) < 10_000_000  # small enough to upload, ~36 000 s once decoded
    decoded_s = count_decoded_seconds(monkeypatch)
    with pytest.raises(AudioTooLongError):
        decode_audio(data, max_duration_s=600.0)
    assert 599.0 < decoded_s[0] <= 600.0


def assert_finite_and_in_range(samples: np.ndarray) -> None:
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.isfinite(samples).all()
    assert np.abs(samples).max() <= 1.0


@pytest.mark.parametrize("n_channels", [1, 2, 6])
@pytest.mark.parametrize("sample_rate", [16_000, 44_100])
def test_nan_and_inf_samples_become_silence_without_touching_their_neighbours(
    n_channels: int, sample_rate: int
) -> None:
    signal = bad_audio.on_channels(tone(1.0, sample_rate), n_channels)
    broken = signal.copy()
    broken[100::997, 0] = np.nan
    broken[200::991, -1] = np.inf
    broken[300::983, 0] = -np.inf
    # The resampler's filter used to smear each one over its neighbours (~100 samples
    # off by up to 1.5 at 44.1 kHz); now each is a silent sample and nothing more.
    silenced = np.where(np.isfinite(broken), broken, 0.0)
    samples = decode_audio(bad_audio.float_wav(broken, sample_rate))
    assert_finite_and_in_range(samples)
    expected = decode_audio(bad_audio.float_wav(silenced, sample_rate))
    np.testing.assert_allclose(samples, expected, atol=1e-6)
    assert rms(samples) == pytest.approx(AMPLITUDE / np.sqrt(2), rel=0.02)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3.4e38, -3.4e38])
def test_a_float_file_of_nothing_but_one_hostile_value_decodes_finite(value: float) -> None:
    samples = decode_audio(bad_audio.float_wav(np.full(44_100, value), 44_100))
    assert_finite_and_in_range(samples)
    assert len(samples) == 16_000


@pytest.mark.parametrize("n_channels", [3, 9, 17, 64, 255])
def test_any_number_of_unpositioned_channels_is_averaged(n_channels: int) -> None:
    # FFmpeg's resampler refused to mix most counts of channels without positions
    # (9, 11, 13, 15, 17 and up) to mono.
    signal = tone(1.0, 16_000)
    every_other = bad_audio.on_channels(signal, n_channels)
    every_other[:, 1::2] = 0.0
    data = bad_audio.pcm_wav(every_other, 16_000)
    share = len(range(0, n_channels, 2)) / n_channels
    np.testing.assert_allclose(decode_audio(data), signal * share, atol=2 / 32_767)


def test_unpositioned_channels_of_float_samples_with_nan_are_averaged() -> None:
    signal = tone(1.0, 16_000)
    channels = bad_audio.on_channels(signal, 9)
    channels[::50, 4] = np.nan
    samples = decode_audio(bad_audio.float_wav(channels))
    assert_finite_and_in_range(samples)
    expected = signal.copy()
    expected[::50] *= 8 / 9
    np.testing.assert_allclose(samples, expected, atol=1e-6)


def assert_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedAudioFormatError) as caught:
        decode_audio(data)
    assert caught.value.code == "unsupported_format"
    assert caught.value.param == "messages"
    assert caught.value.message == "This model does not support the format you provided."


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"RIFF",
        b"\x00" * 4_096,
        b"Hello, this is a text file, not audio.\n" * 100,
        np.zeros(16_000, "<i2").tobytes(),  # raw PCM has no container to say what it is
    ],
    ids=["empty", "riff-magic-only", "zeros", "text", "raw-pcm"],
)
def test_non_audio_is_an_unsupported_format(data: bytes) -> None:
    assert_unsupported(data)


def test_a_file_with_no_audio_stream_is_an_unsupported_format() -> None:
    result = subprocess.run(
        [
            *("ffmpeg", "-v", "error", "-f", "lavfi"),
            *("-i", "testsrc=size=32x32:rate=5:duration=0.4"),
            *("-c:v", "ffv1", "-f", "matroska", "-"),
        ],
        capture_output=True,
        check=True,
    )
    assert_unsupported(result.stdout)


def test_concat_scripts_cannot_read_server_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]
) -> None:
    (tmp_path / "secret.wav").write_bytes(files["wav"])
    monkeypatch.chdir(tmp_path)
    assert_unsupported(b"ffconcat version 1.0\nfile secret.wav\n")


def test_garbage_gives_audio_or_our_error_never_another_exception(
    files: dict[str, bytes],
) -> None:
    rng = random.Random(FUZZ_SEED)
    cases = [rng.randbytes(rng.choice([1, 13, 500, 20_000])) for _ in range(60)]
    for data in files.values():
        cases += [data[: rng.randrange(len(data))] for _ in range(8)]
        for _ in range(8):
            damaged = bytearray(data)
            for _ in range(rng.choice([1, 20])):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            cases.append(bytes(damaged))
    for data in cases:
        try:
            samples = decode_audio(data, max_duration_s=10.0)
        except (UnsupportedAudioFormatError, AudioTooLongError):
            continue
        assert samples.dtype == np.float32 and samples.ndim == 1 and samples.size > 0
        assert np.isfinite(samples).all() and np.abs(samples).max() <= 1.0


def ffmpeg_decoded_duration_s(data: bytes) -> float:
    result = subprocess.run(
        ["ffmpeg", "-v", "quiet", "-i", "-", "-f", "s16le", "-ac", "1", "-ar", "16000", "-"],
        input=data,
        capture_output=True,
    )
    return len(result.stdout) / 2 / 16_000


@pytest.mark.parametrize("container", ["wav", "mp3", "flac", "ogg-opus", "webm-opus"])
def test_a_truncated_upload_gives_as_much_audio_as_the_ffmpeg_cli(
    files: dict[str, bytes], container: str
) -> None:
    truncated = files[container][: len(files[container]) * 3 // 4]
    samples = decode_audio(truncated, sample_rate=16_000)
    expected_s = ffmpeg_decoded_duration_s(truncated)
    assert expected_s > 0.5
    assert len(samples) / 16_000 == pytest.approx(expected_s, abs=LENGTH_TOLERANCE_S)
