"""Clips waiting for the recogniser at once are heard together, each given its own words."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pytest

from omnivox.engines.base import AudioClip
from omnivox.engines.cascade.listening.listener import Listener
from omnivox.engines.cascade.listening.recogniser import (
    FRAMES_PER_S,
    GAP_S,
    SAMPLE_RATE,
    SHORT_WINDOWS_S,
    WINDOW_MARGIN_S,
    WINDOW_S,
    WhisperRecogniser,
    assign_segments,
    pack_windows,
    window_features,
)
from omnivox.engines.cascade.listening.transcripts import TranscriptBook


def seconds(duration_s: float, value: float = 0.1) -> np.ndarray:
    return np.full(int(duration_s * SAMPLE_RATE), value, dtype=np.float32)


def clip(name: str, duration_s: float = 3.0) -> AudioClip:
    return AudioClip(seconds(duration_s), SAMPLE_RATE, name)


def test_segments_go_to_the_clip_whose_span_holds_them() -> None:
    spans = [(0.0, 3.0), (4.0, 6.5), (7.5, 9.0)]
    segments = [
        (0.0, 2.8, "What is the capital of France?"),
        (4.1, 6.4, "Tell me about the moon."),
        (6.6, 7.3, "Thank you."),  # in the gap, nearer the second clip's end
        (7.6, 8.9, "Why is the sky blue?"),
    ]
    assert assign_segments(segments, spans) == [
        "What is the capital of France?",
        "Tell me about the moon. Thank you.",
        "Why is the sky blue?",
    ]


def test_a_segment_running_two_clips_together_asks_for_hearing_them_alone() -> None:
    spans = [(0.0, 3.0), (4.0, 6.5)]
    assert assign_segments([(0.5, 5.0, "France? Tell me")], spans) is None
    # a sliver over the gap is no overlap: the segment is the first clip's
    assert assign_segments([(0.2, 4.1, "France?"), (4.2, 6.4, "Moon.")], spans) == [
        "France?",
        "Moon.",
    ]
    short = [(0.0, 3.0), (4.0, 4.4)]  # a short clip: half of it is enough to share
    assert assign_segments([(0.1, 4.3, "France? Yes")], short) is None


def test_a_clip_left_without_words_asks_for_hearing_them_alone() -> None:
    spans = [(0.0, 3.0), (4.0, 6.5)]
    assert assign_segments([(0.2, 2.9, "What is the capital of France?")], spans) is None


def test_windows_hold_what_fits_in_order_and_a_long_chunk_alone() -> None:
    clips = [[seconds(8.0)], [seconds(9.0)], [seconds(10.0)], [seconds(27.0)], [seconds(2.0)]]
    windows = pack_windows(clips)
    assert [[index for index, _ in window] for window in windows] == [[0, 1, 2], [3], [4]]
    for window in windows:
        length_s = sum(len(chunk) for _, chunk in window) / SAMPLE_RATE
        assert length_s + GAP_S * (len(window) - 1) <= WINDOW_S or len(window) == 1


def padded_features(*sounding_s: float) -> np.ndarray:
    """Log-mel features of a pass as faster-whisper pads them: sound (never all zeros,
    silence included), then zeros to 30 s; one item per duration."""
    features = np.zeros((len(sounding_s), 80, 30 * FRAMES_PER_S), dtype=np.float32)
    for item, duration_s in enumerate(sounding_s):
        features[item, :, : int(duration_s * FRAMES_PER_S)] = -0.7
    return features


def test_speech_ending_early_is_encoded_in_the_shortest_window_it_fits_with_all_its_frames() -> (
    None
):
    shortest, longest = min(SHORT_WINDOWS_S) * FRAMES_PER_S, max(SHORT_WINDOWS_S) * FRAMES_PER_S
    features = padded_features(3.0)
    cut = window_features(features)
    assert cut.shape == (1, 80, shortest)
    np.testing.assert_array_equal(cut, features[..., :shortest])
    assert cut.flags.c_contiguous
    assert window_features(features[0]).shape == (80, shortest)  # unbatched too
    assert window_features(padded_features(0.0)).shape[-1] == shortest  # nothing heard
    # speech too long for the shortest window goes to the next one that holds it
    past_shortest_s = min(SHORT_WINDOWS_S) - WINDOW_MARGIN_S / 2
    cut = window_features(padded_features(past_shortest_s))
    assert cut.shape[-1] == longest > shortest


def test_speech_near_or_past_the_short_windows_keeps_whispers_whole_window() -> None:
    almost = max(SHORT_WINDOWS_S) - WINDOW_MARGIN_S / 2
    for sounding_s in (almost, 25.0, 30.0):
        assert window_features(padded_features(sounding_s)).shape[-1] == 30 * FRAMES_PER_S
    # a batch is cut only as far as its longest item allows
    assert window_features(padded_features(2.0, 25.0)).shape[-1] == 30 * FRAMES_PER_S
    assert window_features(padded_features(2.0, 12.0)).shape[-1] == 20 * FRAMES_PER_S
    assert window_features(padded_features(2.0, 5.0)).shape[-1] == 10 * FRAMES_PER_S
    # a window already short is left alone
    assert window_features(padded_features(2.0)[..., :1000]).shape[-1] == 1000


# how long a test waits for what happens at once on an idle host: only broken batching, never
# a slow host, runs into it
DEADLINE_S = 10.0


class _Segment:
    def __init__(self, start: float, end: float, text: str) -> None:
        self.start, self.end, self.text = start, end, text


class FakeWhisper:
    """Whisper's ``transcribe``: one segment per second-long gap-separated piece of sound,
    written down with the options it was given."""

    def __init__(self) -> None:
        self.asked: list[dict[str, object]] = []

    def transcribe(self, audio: np.ndarray, **options: object) -> tuple[list[_Segment], None]:
        self.asked.append(options)
        if options["without_timestamps"]:
            return [_Segment(0.0, 30.0, "all of it")], None
        sound = np.flatnonzero(audio)
        starts = [sound[0], *sound[1:][np.diff(sound) > 1]]
        return [
            _Segment(start / SAMPLE_RATE, start / SAMPLE_RATE + 1.0, f"piece {i}")
            for i, start in enumerate(starts)
        ], None


def test_a_clip_heard_alone_decodes_no_timestamps_and_clips_heard_together_do() -> None:
    recogniser = WhisperRecogniser.__new__(WhisperRecogniser)
    whisper = FakeWhisper()
    recogniser._model, recogniser.language = whisper, "en"
    assert recogniser.transcribe_clips([[seconds(2.0)]]) == ["all of it"]
    assert whisper.asked[-1]["without_timestamps"] is True  # nothing to place: no time tokens
    # clips in one pass are told apart by their segments' times
    assert recogniser.transcribe_clips([[seconds(2.0)], [seconds(2.0)]]) == ["piece 0", "piece 1"]
    assert whisper.asked[-1]["without_timestamps"] is False


class FakeRecogniser:
    """Hears a clip as its duration; counts passes; the first pass lasts until the test
    ends it (``end_first_pass``), so that the others are sure to wait meanwhile."""

    sample_rate = SAMPLE_RATE

    def __init__(self, hold_first_pass: bool = True) -> None:
        self.passes: list[int] = []
        self.fail = False
        self.fail_longer_than_s: float | None = None  # fail passes holding such a clip
        self.in_first_pass = threading.Event()
        self.end_first_pass = threading.Event()
        if not hold_first_pass:
            self.end_first_pass.set()

    def speech(self, samples: np.ndarray) -> list[np.ndarray]:
        return [samples]

    def transcribe(self, samples: np.ndarray) -> str:
        return self.transcribe_clips([self.speech(samples)])[0]

    def transcribe_clips(self, clips: Sequence[Sequence[np.ndarray]]) -> list[str]:
        if not self.passes:
            self.in_first_pass.set()
            if not self.end_first_pass.wait(DEADLINE_S):
                raise RuntimeError("the test never ended the first pass")
        self.passes.append(len(clips))
        durations = [sum(len(c) for c in chunks) / SAMPLE_RATE for chunks in clips]
        limit = self.fail_longer_than_s
        if self.fail or (limit is not None and max(durations) > limit):
            raise RuntimeError("the recogniser broke")
        return [f"{duration_s:.1f} s" for duration_s in durations]


class OneAtATime:
    """The model slot, one step at a time, that counts the steps that asked for it.

    ``Listener.hear`` puts a request's clips in the line before it asks for the slot, so
    a request that has asked is sure to be in the line.
    """

    def __init__(self) -> None:
        self._slot = threading.Lock()
        self._asked = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._changed:
            self._asked += 1
            self._changed.notify_all()
        with self._slot:
            yield

    def wait_for_asked(self, n: int) -> None:
        with self._changed:
            asked = self._changed.wait_for(lambda: self._asked >= n, DEADLINE_S)
        assert asked, "a request never asked for the slot"


def hear_at_once(
    listener: Listener, recogniser: FakeRecogniser, requests: list[list[AudioClip]]
) -> list[BaseException]:
    """Hear ``requests``, each on a thread of its own: the first holds the slot in the
    first pass, hearing its clips alone, while the rest join the line in this order and
    wait for the slot."""
    slot = OneAtATime()
    errors: list[BaseException] = []

    def one(clips: list[AudioClip]) -> None:
        try:
            listener.hear(clips, slot.hold)
        except BaseException as exc:
            errors.append(exc)

    # daemon threads: a request that broken batching never answers fails its test, and
    # does not keep pytest from exiting
    threads = [threading.Thread(target=one, args=(clips,), daemon=True) for clips in requests]
    threads[0].start()
    assert recogniser.in_first_pass.wait(DEADLINE_S), "the first request was never heard"
    for n_asked, thread in enumerate(threads[1:], start=2):
        thread.start()
        slot.wait_for_asked(n_asked)
    recogniser.end_first_pass.set()
    for thread in threads:
        thread.join(DEADLINE_S)
        assert not thread.is_alive(), "a request never got its transcript"
    return errors


def test_clips_waiting_together_share_one_pass_and_get_their_own_words() -> None:
    recogniser = FakeRecogniser()
    book = TranscriptBook(recogniser)
    listener = Listener(book, recogniser)
    clips = [clip(f"c{i}", 2.0 + i) for i in range(5)]
    assert hear_at_once(listener, recogniser, [[c] for c in clips]) == []
    assert recogniser.passes == [1, 4]  # the first alone, the four that waited in one pass
    assert [book.cached(c) for c in clips] == ["2.0 s", "3.0 s", "4.0 s", "5.0 s", "6.0 s"]
    assert (listener.passes, listener.clips_heard) == (2, 5)


def test_a_clip_asked_for_twice_while_waiting_is_heard_once() -> None:
    recogniser = FakeRecogniser()
    listener = Listener(TranscriptBook(recogniser), recogniser)
    shared = clip("history")
    assert hear_at_once(listener, recogniser, [[clip("first")], [shared], [shared]]) == []
    assert sum(recogniser.passes) == 2


def test_a_failing_pass_fails_every_request_in_it() -> None:
    recogniser = FakeRecogniser()
    recogniser.fail = True
    listener = Listener(TranscriptBook(recogniser), recogniser)
    errors = hear_at_once(listener, recogniser, [[clip(f"c{i}")] for i in range(3)])
    assert len(errors) == 3 and all("broke" in str(e) for e in errors)
    recogniser.fail = False
    listener.hear([clip("later")], OneAtATime().hold)
    assert recogniser.passes[-1] == 1  # and the next request is heard


def test_a_failing_pass_fails_only_the_requests_whose_clips_it_held() -> None:
    recogniser = FakeRecogniser()
    recogniser.fail_longer_than_s = 10.0
    book = TranscriptBook(recogniser)
    listener = Listener(book, recogniser)
    first, long_a, long_b, short = clip("a", 3.0), clip("b", 14.0), clip("c", 14.0), clip("d")
    # b and c fill a window (14 + 1 + 14 s): d waits for a pass of its own, whoever runs it
    errors = hear_at_once(listener, recogniser, [[first], [long_a], [long_b], [short]])
    assert len(errors) == 2 and all("speech recognition failed" in str(e) for e in errors)
    assert book.cached(first) == "3.0 s" and book.cached(short) == "3.0 s"
    assert book.cached(long_a) is None and book.cached(long_b) is None


@pytest.mark.parametrize("n_clips", [1, 3])
def test_nothing_is_heard_twice_once_known(n_clips: int) -> None:
    recogniser = FakeRecogniser(hold_first_pass=False)
    book = TranscriptBook(recogniser)
    listener = Listener(book, recogniser)
    clips = [clip(f"k{i}") for i in range(n_clips)]
    listener.hear(clips, OneAtATime().hold)
    listener.hear(clips, OneAtATime().hold)
    assert recogniser.passes == [n_clips]
