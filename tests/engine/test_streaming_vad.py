"""The streaming VAD on a sentence said by espeak-ng, padded with silence: the speech is
found, the silence and quiet noise are not, and how the stream is cut into pieces, how
many streams run beside it and ``reset`` change nothing of what it hears."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from omnivox.audio.pcm import resample
from omnivox.engines.base import AudioClip
from omnivox.engines.vad import VAD_SAMPLE_RATE, WINDOW_SAMPLES, StreamingVad

pytestmark = pytest.mark.engine

SENTENCE = "The quick brown fox jumps over the lazy dog."
PAD_S = 1.0
SPEECH = 0.5  # the probability above which a window counts as speech
LOUD = 0.01  # a sample above this is part of the speech, not espeak's own silence
HANGOVER_S = 0.25  # the model stays above its floor a little after the last word
MIN_SPEECH_SHARE = 0.8  # the pauses between words may score low, most of the speech not
SAME = 1e-5
NOISE_AMPLITUDE = 0.01  # -40 dBFS white noise: a quiet room, not a voice


def padded(samples: np.ndarray) -> np.ndarray:
    silence = np.zeros(round(PAD_S * VAD_SAMPLE_RATE), dtype=np.float32)
    return np.concatenate([silence, samples, silence])


@pytest.fixture(scope="module")
def sentence(spoken: Callable[[str], AudioClip]) -> np.ndarray:
    """The sentence at the VAD's rate with 1 s of silence either side."""
    clip = spoken(SENTENCE)
    return padded(resample(clip.samples, clip.sample_rate, VAD_SAMPLE_RATE))


@pytest.fixture(scope="module")
def whole(sentence: np.ndarray) -> np.ndarray:
    """The probabilities of the padded sentence fed in one piece."""
    return np.array(StreamingVad().feed(sentence))


def in_pieces(samples: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    cuts = np.cumsum(rng.integers(0, 3 * WINDOW_SAMPLES, size=samples.size // 100))
    return np.split(samples, cuts[cuts < samples.size])


def hear(samples: np.ndarray, seed: int) -> list[float]:
    """The probabilities one stream gives for ``samples`` fed in random pieces."""
    vad = StreamingVad()
    return [p for piece in in_pieces(samples, seed) for p in vad.feed(piece)]


def test_a_window_is_scored_for_every_512_samples_fed(sentence: np.ndarray) -> None:
    vad = StreamingVad()
    assert vad.feed(sentence[: WINDOW_SAMPLES - 1]) == []
    assert len(vad.feed(sentence[WINDOW_SAMPLES - 1 : WINDOW_SAMPLES])) == 1
    rest = vad.feed(sentence[WINDOW_SAMPLES:])
    assert len(rest) == sentence.size // WINDOW_SAMPLES - 1
    assert vad.n_windows == sentence.size // WINDOW_SAMPLES
    assert all(0.0 <= p <= 1.0 for p in rest)


def test_the_speech_is_found_and_the_silence_around_it_is_not(
    sentence: np.ndarray, whole: np.ndarray
) -> None:
    loud = np.flatnonzero(np.abs(sentence) > LOUD)
    starts = np.arange(whole.size) * WINDOW_SAMPLES
    ends = starts + WINDOW_SAMPLES
    speech = (starts >= loud[0]) & (ends <= loud[-1])
    before = ends <= loud[0]
    after = starts >= loud[-1] + HANGOVER_S * VAD_SAMPLE_RATE
    assert before.sum() >= PAD_S * VAD_SAMPLE_RATE / WINDOW_SAMPLES - 1
    assert after.sum() >= (PAD_S - HANGOVER_S) * VAD_SAMPLE_RATE / WINDOW_SAMPLES - 1
    assert np.mean(whole[speech] > SPEECH) >= MIN_SPEECH_SHARE, whole.round(2).tolist()
    assert np.all(whole[before] < SPEECH), whole.round(2).tolist()
    assert np.all(whole[after] < SPEECH), whole.round(2).tolist()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pieces_of_any_length_are_heard_as_the_whole(
    sentence: np.ndarray, whole: np.ndarray, seed: int
) -> None:
    pieces = in_pieces(sentence, seed)
    assert any(piece.size < WINDOW_SAMPLES for piece in pieces)
    assert any(piece.size > 2 * WINDOW_SAMPLES for piece in pieces)
    np.testing.assert_allclose(hear(sentence, seed), whole, rtol=0, atol=SAME)


def test_one_window_at_a_time_is_heard_as_the_whole(
    sentence: np.ndarray, whole: np.ndarray
) -> None:
    """Each ``feed`` runs the model once over one window: the sequential reference."""
    vad = StreamingVad()
    starts = range(0, sentence.size, WINDOW_SAMPLES)
    heard = [p for i in starts for p in vad.feed(sentence[i : i + WINDOW_SAMPLES])]
    np.testing.assert_allclose(heard, whole, rtol=0, atol=SAME)


def test_reset_starts_a_fresh_stream(sentence: np.ndarray, whole: np.ndarray) -> None:
    vad = StreamingVad()
    speech_end = sentence.size - round(PAD_S * VAD_SAMPLE_RATE)
    vad.feed(sentence[:speech_end])
    vad.feed(sentence[: WINDOW_SAMPLES // 2])  # half a window waiting
    vad.reset()
    assert vad.n_windows == 0
    np.testing.assert_allclose(vad.feed(sentence), whole, rtol=0, atol=SAME)


def test_without_reset_the_stream_remembers_what_came_before(
    sentence: np.ndarray, whole: np.ndarray
) -> None:
    """What ``reset`` undoes: the words just heard lift the first windows of what follows."""
    vad = StreamingVad()
    speech_end = sentence.size - round(PAD_S * VAD_SAMPLE_RATE)
    speech_end -= speech_end % WINDOW_SAMPLES
    vad.feed(sentence[:speech_end])
    assert abs(vad.feed(sentence[:WINDOW_SAMPLES])[0] - whole[0]) > SAME


def test_streams_side_by_side_keep_their_own_state(sentence: np.ndarray, whole: np.ndarray) -> None:
    silence = np.zeros_like(sentence)
    alone = StreamingVad().feed(silence)
    with ThreadPoolExecutor(max_workers=4) as pool:
        heard = list(pool.map(hear, [sentence, silence, sentence, silence], range(4)))
    for i, probabilities in enumerate(heard):
        expected = whole if i % 2 == 0 else alone
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=SAME)


def test_silence_and_quiet_noise_are_not_speech() -> None:
    n_samples = 3 * VAD_SAMPLE_RATE
    noise = NOISE_AMPLITUDE * np.random.default_rng(0).standard_normal(n_samples)
    for samples in (np.zeros(n_samples, dtype=np.float32), noise.astype(np.float32)):
        probabilities = StreamingVad().feed(samples)
        assert len(probabilities) == n_samples // WINDOW_SAMPLES
        assert max(probabilities) < SPEECH


def test_more_than_one_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="one channel"):
        StreamingVad().feed(np.zeros((2, WINDOW_SAMPLES), dtype=np.float32))
