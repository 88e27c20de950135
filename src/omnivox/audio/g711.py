"""G.711 mu-law and A-law: 8-bit companded telephone audio to and from s16le PCM.

These are OpenAI's realtime formats "audio/pcmu" (mu-law) and "audio/pcma" (A-law):
8 kHz mono, one byte per sample. The tables are those of ITU-T G.711 as the classic
reference implementation (Sun's ``g711.c``, which CPython's ``audioop`` also used)
computes them: a decoder table of 256 entries and an encoder table indexed by every
16-bit sample, so each call is one numpy lookup. Encoding a decoded sample gives its
code back, except mu-law's "negative zero" 0x7F, which decodes to 0 like 0xFF and is
encoded as 0xFF.

This module does not resample: callers bring PCM at ``G711_SAMPLE_RATE`` and take it
away at that rate.
"""

from __future__ import annotations

import numpy as np

from omnivox.audio.pcm import S16_BYTES_PER_SAMPLE

G711_SAMPLE_RATE = 8_000  # Hz, mono

_ALL_CODES = np.arange(256, dtype=np.int32)
_ALL_S16 = np.arange(-32_768, 32_768, dtype=np.int32)

# mu-law works on 14-bit magnitudes: a bias of 33 makes every segment end at 2**k - 1.
_ULAW_BIAS = 0x84  # 132, the bias in 16-bit units (33 << 2)
_ULAW_LOUDEST = 0x7F  # before the sign and the inversion
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
# A-law works on 13-bit magnitudes and inverts the even bits of each code.
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])
_ALAW_EVEN_BITS = 0x55
_ALAW_SIGN_BIT = 0x80


def _ulaw_decode_table() -> np.ndarray:
    code = ~_ALL_CODES & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype("<i2")


def _alaw_decode_table() -> np.ndarray:
    code = _ALL_CODES ^ _ALAW_EVEN_BITS
    segment = (code & 0x70) >> 4
    step = (code & 0x0F) << 4
    magnitude = np.where(segment == 0, step + 8, (step + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & _ALAW_SIGN_BIT, magnitude, -magnitude).astype("<i2")


def _ulaw_encode_table() -> np.ndarray:
    """The mu-law code of every s16 sample, indexed by the sample's uint16 bit pattern."""
    value = _ALL_S16 >> 2  # 14-bit
    mask = np.where(value < 0, 0x7F, 0xFF)
    magnitude = np.abs(value) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)
    # Past the last segment (|value| >= 8159) the code saturates at the loudest one.
    code = np.where(
        segment < 8, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F), _ULAW_LOUDEST
    )
    return _by_bit_pattern((code ^ mask).astype(np.uint8))


def _alaw_encode_table() -> np.ndarray:
    """The A-law code of every s16 sample, indexed by the sample's uint16 bit pattern."""
    value = _ALL_S16 >> 3  # 13-bit
    mask = np.where(value >= 0, _ALAW_EVEN_BITS | _ALAW_SIGN_BIT, _ALAW_EVEN_BITS)
    magnitude = np.where(value >= 0, value, -value - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)  # never 8 for 13-bit input
    shift = np.maximum(segment, 1)
    code = (segment << 4) | ((magnitude >> shift) & 0x0F)
    return _by_bit_pattern((code ^ mask).astype(np.uint8))


def _by_bit_pattern(codes_from_min: np.ndarray) -> np.ndarray:
    """Reorder a table that runs from -32768 to 32767 so that index i is the sample
    whose 16 bits, read unsigned, are i (0..32767 first, then the negatives)."""
    return np.roll(codes_from_min, -32_768)


_ULAW_TO_S16 = _ulaw_decode_table()
_ALAW_TO_S16 = _alaw_decode_table()
_S16_TO_ULAW = _ulaw_encode_table()
_S16_TO_ALAW = _alaw_encode_table()


def ulaw_to_s16le(data: bytes) -> bytes:
    """Decode mu-law bytes ("audio/pcmu") to signed 16-bit little-endian PCM."""
    return _ULAW_TO_S16[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_to_s16le(data: bytes) -> bytes:
    """Decode A-law bytes ("audio/pcma") to signed 16-bit little-endian PCM."""
    return _ALAW_TO_S16[np.frombuffer(data, dtype=np.uint8)].tobytes()


def s16le_to_ulaw(pcm: bytes) -> bytes:
    """Encode signed 16-bit little-endian PCM as mu-law bytes, one per sample."""
    return _S16_TO_ULAW[_bit_patterns(pcm)].tobytes()


def s16le_to_alaw(pcm: bytes) -> bytes:
    """Encode signed 16-bit little-endian PCM as A-law bytes, one per sample."""
    return _S16_TO_ALAW[_bit_patterns(pcm)].tobytes()


def _bit_patterns(pcm: bytes) -> np.ndarray:
    if len(pcm) % S16_BYTES_PER_SAMPLE:
        raise ValueError(f"s16le data must be whole 2-byte samples, got {len(pcm)} bytes")
    return np.frombuffer(pcm, dtype="<u2")
