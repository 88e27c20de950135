"""The vllm-omni engine's reading of vLLM-Omni's speech and chunks, piece by piece."""

from __future__ import annotations

import base64
import io
import struct
import wave

import numpy as np
import pytest

from omnivox.engines.vllm_omni.dialect import QWEN2_5, QWEN3, family_of, read_chunk
from omnivox.engines.vllm_omni.wav import WavPieces, parse_wav
from omnivox.errors import UpstreamError


def wav_bytes(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def float_wav(samples: np.ndarray, rate: int, channels: int) -> bytes:
    data = samples.astype("<f4").tobytes()
    fmt = struct.pack("<HHIIHH", 3, channels, rate, rate * 4 * channels, 4 * channels, 32)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def test_a_24khz_wav_passes_through_sample_for_sample() -> None:
    samples = np.arange(-600, 600, dtype=np.int16)
    pieces = WavPieces()
    assert pieces.feed(wav_bytes(samples, 24_000)) == samples.astype("<i2").tobytes()
    assert pieces.flush() == b""


def test_a_float_stereo_wav_at_16khz_is_mixed_and_resampled() -> None:
    left = np.sin(np.linspace(0, 40 * np.pi, 16_000)).astype(np.float32) * 0.5
    stereo = np.stack([left, left], axis=1).reshape(-1)
    pieces = WavPieces()
    pcm = pieces.feed(float_wav(stereo, 16_000, 2)) + pieces.flush()
    assert abs(len(pcm) // 2 - 24_000) <= 2  # one second at the output rate
    assert pieces.format.channels == 2 and pieces.format.is_float


def test_bare_pcm_after_a_header_continues_its_format_across_split_samples() -> None:
    samples = np.arange(1, 101, dtype=np.int16)
    raw = samples.astype("<i2").tobytes()
    pieces = WavPieces()
    out = pieces.feed(wav_bytes(samples[:10], 24_000))
    out += pieces.feed(raw[20:51])  # ends mid-sample
    out += pieces.feed(raw[51:])
    assert out == raw


def test_a_streaming_writers_placeholder_size_means_the_rest() -> None:
    data = wav_bytes(np.arange(50, dtype=np.int16), 24_000)
    streamed = data[:40] + struct.pack("<I", 0xFFFFFFFF) + data[44:]
    fmt, pcm = parse_wav(streamed)
    assert fmt.sample_rate == 24_000 and pcm == data[44:]


def test_a_riff_file_that_is_not_wave_is_the_upstreams_fault() -> None:
    with pytest.raises(UpstreamError, match="not WAVE"):
        WavPieces().feed(b"RIFF\x10\x00\x00\x00AVI LIST....")


def test_chunks_say_what_they_carry_by_their_modality() -> None:
    wav = base64.b64encode(wav_bytes(np.zeros(48, dtype=np.int16), 24_000)).decode()
    text = {"modality": "text", "choices": [{"index": 0, "delta": {"content": "Hi"}}]}
    audio = {
        "modality": "audio",
        "choices": [{"index": 0, "delta": {"content": wav}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 400, "completion_tokens": 0},
    }
    usage = {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}}
    (piece,) = read_chunk(text)
    assert piece.text == "Hi"
    (piece,) = read_chunk(audio)  # neither its usage nor its finish reason is the text's
    assert piece.audio[:4] == b"RIFF"
    (piece,) = read_chunk(usage)
    assert (piece.prompt_tokens, piece.completion_tokens) == (9, 3)
    unmarked = {"choices": [{"index": 0, "delta": {"content": wav}}]}
    assert [p.audio[:4] for p in read_chunk(unmarked)] == [b"RIFF"]


def test_an_error_chunk_ends_the_answer_with_the_upstreams_words() -> None:
    with pytest.raises(UpstreamError, match="engine died"):
        list(read_chunk({"error": {"message": "engine died", "code": 500}}))


@pytest.mark.parametrize(
    ("names", "family"),
    [
        (("Qwen/Qwen3-Omni-30B-A3B-Instruct",), QWEN3),
        (("omni", "/models/qwen3_omni_moe"), QWEN3),
        (("Qwen/Qwen2.5-Omni-7B",), QWEN2_5),
        ((None,), QWEN2_5),
    ],
)
def test_the_family_is_read_from_the_models_names(names: tuple[str | None, ...], family) -> None:
    assert family_of(*names) is family
