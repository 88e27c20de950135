"""Streaming PCM: PcmChunker's base64-safe pieces, and the resamplers and sample conversions."""

from __future__ import annotations

import base64
import random

import numpy as np
import pytest

from omnivox.audio import (
    OUTPUT_SAMPLE_RATE,
    PcmChunker,
    StreamResampler,
    duration_s,
    float_to_s16le,
    resample,
    s16le_to_float,
)

SYNTH_SAMPLE_RATE = 22_050  # Hz; what a Piper voice writes


def random_pushes(seed: int, n_pushes: int = 200) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(rng.choice([0, 1, 2, 5, 6, 7, 100, 4_801])) for _ in range(n_pushes)]


@pytest.mark.parametrize("max_bytes", [None, 6, 600, 1_000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_chunker_pieces_are_aligned_and_rebuild_the_input(max_bytes: int | None, seed: int) -> None:
    chunker = PcmChunker(max_bytes=max_bytes)
    pushes = random_pushes(seed)
    pieces = [piece for data in pushes for piece in chunker.push(data)]
    rest = chunker.flush()
    assert all(piece and len(piece) % 6 == 0 for piece in pieces)
    if max_bytes is not None:
        assert max(len(piece) for piece in pieces) <= max_bytes
    assert len(rest) < 6
    assert b"".join([*pieces, rest]) == b"".join(pushes)


def test_chunker_base64_pieces_concatenate_into_valid_base64() -> None:
    pcm = float_to_s16le(np.sin(np.arange(10_001, dtype=np.float32) / 7))
    chunker = PcmChunker(max_bytes=1_000)
    texts = [base64.b64encode(piece).decode() for piece in chunker.push(pcm[:5_003])]
    texts += [base64.b64encode(piece).decode() for piece in chunker.push(pcm[5_003:])]
    texts.append(base64.b64encode(chunker.flush()).decode())
    assert all("=" not in text for text in texts[:-1])
    assert base64.b64decode("".join(texts), validate=True) == pcm


def test_chunker_holds_back_less_than_a_piece_and_flush_empties_it() -> None:
    chunker = PcmChunker()
    assert chunker.push(b"\x01\x02\x03\x04") == []
    assert chunker.push(b"\x05\x06\x07\x08") == [b"\x01\x02\x03\x04\x05\x06"]
    assert chunker.flush() == b"\x07\x08"
    assert chunker.flush() == b""


def test_chunker_max_bytes_is_rounded_down_to_whole_pieces() -> None:
    pieces = PcmChunker(max_bytes=10).push(bytes(30))
    assert [len(piece) for piece in pieces] == [6, 6, 6, 6, 6]


def test_chunker_refuses_a_max_below_one_piece() -> None:
    with pytest.raises(ValueError):
        PcmChunker(max_bytes=5)


def test_s16le_round_trip_is_exact_and_full_scale_clips() -> None:
    pcm = np.array([-32_768, -1, 0, 1, 12_345, 32_767], dtype="<i2").tobytes()
    assert float_to_s16le(s16le_to_float(pcm)) == pcm
    clipped = np.frombuffer(float_to_s16le(np.array([-2.0, -1.0, 1.0, 2.0])), dtype="<i2")
    assert clipped.tolist() == [-32_768, -32_768, 32_767, 32_767]


def test_s16le_to_float_refuses_half_a_sample() -> None:
    with pytest.raises(ValueError):
        s16le_to_float(b"\x00\x01\x02")


def test_duration_s() -> None:
    assert duration_s(36_000, OUTPUT_SAMPLE_RATE) == 1.5


@pytest.mark.parametrize(("from_rate", "to_rate"), [(22_050, 24_000), (48_000, 16_000)])
def test_resample_keeps_duration_and_pitch(from_rate: int, to_rate: int) -> None:
    t_s = np.arange(from_rate) / from_rate
    tone = np.sin(2 * np.pi * 440 * t_s).astype(np.float32)
    out = resample(tone, from_rate, to_rate)
    assert out.dtype == np.float32
    assert abs(len(out) - to_rate) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert np.fft.rfftfreq(len(out), 1 / to_rate)[np.argmax(spectrum)] == pytest.approx(440, abs=1)


def test_resample_at_the_same_rate_returns_the_input() -> None:
    samples = np.linspace(-1, 1, 100, dtype=np.float32)
    np.testing.assert_array_equal(resample(samples, 24_000, 24_000), samples)


def test_stream_resampler_matches_one_shot_resampling() -> None:
    rng = np.random.default_rng(0)
    signal = (0.3 * rng.standard_normal(SYNTH_SAMPLE_RATE * 2)).astype(np.float32)
    resampler = StreamResampler(SYNTH_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)
    sizes = [1, 999, 4_410, 37, 10_000]
    pieces, start = [], 0
    while start < len(signal):
        size = sizes[len(pieces) % len(sizes)]
        pieces.append(resampler.process(signal[start : start + size]))
        start += size
    streamed = np.concatenate([*pieces, resampler.flush()])
    one_shot = resample(signal, SYNTH_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)
    assert len(streamed) == len(one_shot)
    np.testing.assert_allclose(streamed, one_shot, atol=1e-5)


def test_stream_resampler_at_the_same_rate_passes_through() -> None:
    resampler = StreamResampler(OUTPUT_SAMPLE_RATE, OUTPUT_SAMPLE_RATE)
    samples = np.ones(10, dtype=np.float32)
    np.testing.assert_array_equal(resampler.process(samples), samples)
    assert resampler.flush().size == 0
