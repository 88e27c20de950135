"""Speak units of text, one after another, as one continuous 24 kHz PCM stream.

A ``UnitSpeaker`` serves one answer in one voice. ``speak(unit)`` removes what
should not be read aloud (``speakable_text``), synthesizes the rest, resamples
it to ``OUTPUT_SAMPLE_RATE`` through one stream resampler (so unit borders do
not click, and the voice's pitch factor applies), and returns s16le pieces of
at most ``PIECE_S`` seconds as soon as each is ready; ``windows(unit)`` gives
the same pieces grouped by the synthesis window that made them. A short pause
separates units. ``speed`` (1 by default) makes the voice, and the pauses, faster or
slower. ``flush`` returns the samples still in the resampler at the end.

This module knows nothing of threads, events or of the chat model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Protocol

import numpy as np

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import StreamResampler, float_to_s16le
from omnivox.engines.cascade.speaking.speakable import speakable_text
from omnivox.engines.cascade.speaking.synthesizer import SpeechPiece

PIECE_S = 0.2
UNIT_GAP_S = 0.1


class Synthesizer(Protocol):
    def play_rate(self, voice: str) -> int: ...

    def synthesize(self, text: str, voice: str, speed: float = 1.0) -> Iterator[SpeechPiece]: ...


class UnitSpeaker:
    def __init__(self, synthesizer: Synthesizer, voice: str, *, speed: float = 1.0) -> None:
        self._synthesizer = synthesizer
        self._voice = voice
        self._speed = speed
        self._play_rate = synthesizer.play_rate(voice)
        self._resampler = StreamResampler(self._play_rate, OUTPUT_SAMPLE_RATE)
        self._piece_samples = round(PIECE_S * OUTPUT_SAMPLE_RATE)
        self._units_spoken = 0

    def speak(self, unit: str, cancel: threading.Event) -> Iterator[bytes]:
        """PCM pieces of ``unit``; stops early once ``cancel`` is set."""
        for pieces in self.windows(unit, cancel):
            yield from pieces

    def windows(self, unit: str, cancel: threading.Event) -> Iterator[list[bytes]]:
        """The PCM pieces of ``unit``, one synthesis window's at a time: each ``next()``
        makes one window (the pause before the unit comes with the first), so that a
        caller holding a model slot per ``next()`` holds it once per window and sends
        every piece of a window made as soon as it is made."""
        text = speakable_text(unit)
        if not text:
            return
        pause: list[bytes] = []
        if self._units_spoken:
            gap = np.zeros(round(UNIT_GAP_S / self._speed * self._play_rate), dtype=np.float32)
            pause = list(self._pieces(self._resampler.process(gap)))
        self._units_spoken += 1
        for piece in self._synthesizer.synthesize(text, self._voice, self._speed):
            if cancel.is_set():
                return
            yield pause + list(self._pieces(self._resampler.process(piece.samples)))
            pause = []

    def flush(self) -> bytes:
        return float_to_s16le(self._resampler.flush())

    def _pieces(self, samples: np.ndarray) -> Iterator[bytes]:
        for start in range(0, len(samples), self._piece_samples):
            yield float_to_s16le(samples[start : start + self._piece_samples])
