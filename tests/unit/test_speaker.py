"""Units of text spoken as one PCM stream, a synthesis window per model step."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator

import numpy as np

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.engines.cascade.engine import _speech_work
from omnivox.engines.cascade.scheduler import ComputeSlot, Pace, Stage
from omnivox.engines.cascade.speaking.speaker import PIECE_S, UNIT_GAP_S, UnitSpeaker
from omnivox.engines.cascade.speaking.synthesizer import SpeechPiece
from omnivox.engines.events import AudioDelta

WINDOW_S = 1.0
BYTES_PER_S = OUTPUT_SAMPLE_RATE * 2


class WindowedVoice:
    """Two windows of a tone per text, at the output rate; counts the windows made."""

    def __init__(self) -> None:
        self.windows_made = 0

    def play_rate(self, voice: str) -> int:
        return OUTPUT_SAMPLE_RATE

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[SpeechPiece]:
        t = np.arange(round(WINDOW_S * OUTPUT_SAMPLE_RATE)) / OUTPUT_SAMPLE_RATE
        for _ in range(2):
            self.windows_made += 1
            tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
            yield SpeechPiece(tone, OUTPUT_SAMPLE_RATE)


class CountingSlot(ComputeSlot):
    def __init__(self) -> None:
        super().__init__()
        self.speech_steps = 0

    @contextlib.contextmanager
    def hold(
        self, pace: Pace, stage: Stage, cancel: threading.Event | None = None
    ) -> Iterator[bool]:
        if stage is Stage.SPEECH:
            self.speech_steps += 1
        with super().hold(pace, stage, cancel) as granted:
            yield granted


def test_each_window_is_made_by_one_next_and_comes_whole() -> None:
    voice = WindowedVoice()
    speaker = UnitSpeaker(voice, "alloy")
    windows = speaker.windows("One.", threading.Event())
    first = next(windows)
    assert voice.windows_made == 1
    assert sum(map(len, first)) == round(WINDOW_S * BYTES_PER_S)
    assert all(len(p) <= PIECE_S * BYTES_PER_S for p in first)
    assert len(list(windows)) == 1
    second_unit = list(speaker.windows("Two.", threading.Event()))
    # the pause between units comes with the next unit's first window
    assert [sum(map(len, w)) for w in second_unit] == [
        round((UNIT_GAP_S + WINDOW_S) * BYTES_PER_S),
        round(WINDOW_S * BYTES_PER_S),
    ]


def test_speak_gives_the_pieces_of_the_windows_in_order() -> None:
    by_window = UnitSpeaker(WindowedVoice(), "alloy")
    by_piece = UnitSpeaker(WindowedVoice(), "alloy")
    for unit in ("One.", "Two."):
        pieces = list(by_piece.speak(unit, threading.Event()))
        assert pieces == [p for w in by_window.windows(unit, threading.Event()) for p in w]


def test_the_slot_is_held_once_per_window_not_once_per_piece() -> None:
    """Pieces of a window already made must not wait for the slot behind other steps."""
    slot = CountingSlot()
    units: queue.SimpleQueue[str | None] = queue.SimpleQueue()
    for unit in ("One.", "Two.", None):
        units.put(unit)
    events = list(
        _speech_work(UnitSpeaker(WindowedVoice(), "alloy"), units, slot, Pace(), threading.Event())
    )
    audio_s = sum(len(e.pcm_s16le) for e in events if isinstance(e, AudioDelta)) / BYTES_PER_S
    assert audio_s >= 4 * WINDOW_S
    assert len(events) > 4 * WINDOW_S / PIECE_S  # still sent in pieces
    # 2 windows per unit, and one more step per unit to find that it has no more
    assert slot.speech_steps == 2 * (2 + 1)
