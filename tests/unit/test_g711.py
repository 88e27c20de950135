"""G.711 mu-law and A-law, checked against the ITU-T reference values and, where Python
still has it (3.11, 3.12), against CPython's own C implementation in ``audioop``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np
import pytest

from omnivox.audio.g711 import (
    G711_SAMPLE_RATE,
    alaw_to_s16le,
    s16le_to_alaw,
    s16le_to_ulaw,
    ulaw_to_s16le,
)

ALL_CODES = bytes(range(256))
ALL_S16 = np.arange(-32_768, 32_768, dtype="<i2").tobytes()
ULAW_ZEROS = {0xFF, 0x7F}  # mu-law has a positive and a negative zero; 0 encodes as 0xFF
SINE_HZ = 440.0
SINE_AMPLITUDE = 0.5
MIN_SNR_DB = 30.0

Codec = tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]
CODECS: dict[str, Codec] = {
    "ulaw": (ulaw_to_s16le, s16le_to_ulaw),
    "alaw": (alaw_to_s16le, s16le_to_alaw),
}


def s16(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<i2").astype(np.int64)


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    with warnings.catch_warnings():  # "deprecated and slated for removal in Python 3.13"
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xFF, 0), (0x7F, 0), (0x00, -32_124), (0x80, 32_124), (0xFE, 8), (0x7E, -8)],
)
def test_ulaw_decodes_to_the_reference_values(code: int, sample: int) -> None:
    assert s16(ulaw_to_s16le(bytes([code]))).tolist() == [sample]


@pytest.mark.parametrize(
    ("code", "sample"),
    [(0xD5, 8), (0x55, -8), (0xAA, 32_256), (0x2A, -32_256), (0xD4, 24), (0x54, -24)],
)
def test_alaw_decodes_to_the_reference_values(code: int, sample: int) -> None:
    assert s16(alaw_to_s16le(bytes([code]))).tolist() == [sample]


def test_silence_and_full_scale_encode_to_the_reference_codes() -> None:
    pcm = np.array([0, 32_767, -32_768], dtype="<i2").tobytes()
    assert list(s16le_to_ulaw(pcm)) == [0xFF, 0x80, 0x00]
    assert list(s16le_to_alaw(pcm)) == [0xD5, 0xAA, 0x2A]


@pytest.mark.parametrize("name", sorted(CODECS))
def test_every_code_decodes_to_a_distinct_level_that_encodes_back_to_it(name: str) -> None:
    decode, encode = CODECS[name]
    levels = decode(ALL_CODES)
    assert len(levels) == 2 * 256
    codes = list(encode(levels))
    if name == "ulaw":
        assert len(set(s16(levels).tolist())) == 255  # the two zeros are one level
        assert [c for c, back in zip(ALL_CODES, codes, strict=True) if c != back] == [0x7F]
        assert codes[0x7F] == 0xFF
    else:
        assert len(set(s16(levels).tolist())) == 256
        assert codes == list(ALL_CODES)
    assert decode(bytes(codes)) == levels


@pytest.mark.parametrize("name", sorted(CODECS))
def test_encoding_rounds_every_sample_to_a_level_near_it(name: str) -> None:
    """Monotonic, odd-symmetric quantisation whose error grows with the level (that is
    what companding means), never more than one step of the sample's segment."""
    decode, encode = CODECS[name]
    samples = s16(ALL_S16)
    levels = s16(decode(encode(ALL_S16)))
    assert np.all(np.diff(levels) >= 0)
    error = np.abs(levels - samples)
    quiet = np.abs(samples) < 256
    assert error[quiet].max() <= 16
    assert np.all(error <= np.maximum(16, np.abs(samples) // 16 + 1))


@pytest.mark.parametrize("name", sorted(CODECS))
def test_a_sine_survives_encode_and_decode_above_30_db_snr(name: str) -> None:
    decode, encode = CODECS[name]
    t_s = np.arange(G711_SAMPLE_RATE) / G711_SAMPLE_RATE
    sine = np.rint(SINE_AMPLITUDE * 32_767 * np.sin(2 * np.pi * SINE_HZ * t_s)).astype("<i2")
    back = s16(decode(encode(sine.tobytes())))
    noise = back - sine
    snr_db = 10 * np.log10(np.sum(sine.astype(np.float64) ** 2) / np.sum(noise**2.0))
    assert snr_db > MIN_SNR_DB


def test_empty_input_gives_empty_output() -> None:
    for decode, encode in CODECS.values():
        assert decode(b"") == b""
        assert encode(b"") == b""


def test_half_a_sample_is_refused() -> None:
    for _, encode in CODECS.values():
        with pytest.raises(ValueError, match="whole 2-byte samples"):
            encode(b"\x00\x01\x02")


def test_every_code_decodes_as_audioop_does(audioop: ModuleType) -> None:
    assert ulaw_to_s16le(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_to_s16le(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_every_sample_encodes_as_audioop_does(audioop: ModuleType) -> None:
    assert s16le_to_ulaw(ALL_S16) == audioop.lin2ulaw(ALL_S16, 2)
    assert s16le_to_alaw(ALL_S16) == audioop.lin2alaw(ALL_S16, 2)
