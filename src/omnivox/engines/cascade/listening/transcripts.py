"""Transcripts of audio clips, each recognised once and then remembered.

``TranscriptBook.transcript(clip)`` returns the clip's own ``transcript`` when it
has one (earlier assistant audio), else the recogniser's words for it, resampled
to the recogniser's rate first when needed. Results are kept in a thread-safe
in-memory LRU keyed by the clip's ``sha256``, so a conversation's history is
not transcribed again on every turn. Two threads asking for the same new clip
at once may both transcribe it; the answer is the same.

This module knows nothing of prompts or of which model recognises.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Protocol

import numpy as np

from omnivox.audio.pcm import resample
from omnivox.engines.base import AudioClip

DEFAULT_CACHE_ENTRIES = 1024


class Recogniser(Protocol):
    sample_rate: int

    def transcribe(self, samples: np.ndarray) -> str: ...


class TranscriptBook:
    def __init__(self, recogniser: Recogniser, *, max_entries: int = DEFAULT_CACHE_ENTRIES) -> None:
        self.recogniser = recogniser
        self._max_entries = max_entries
        self._known: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def transcript(self, clip: AudioClip) -> str:
        if clip.transcript is not None:
            return clip.transcript
        with self._lock:
            known = self._known.get(clip.sha256)
            if known is not None:
                self._known.move_to_end(clip.sha256)
                return known
        text = self.recogniser.transcribe(self.samples(clip))
        self.remember(clip, text)
        return text

    def samples(self, clip: AudioClip) -> np.ndarray:
        """The clip at the recogniser's sample rate."""
        return resample(clip.samples, clip.sample_rate, self.recogniser.sample_rate)

    def remember(self, clip: AudioClip, text: str) -> None:
        with self._lock:
            self._known[clip.sha256] = text
            self._known.move_to_end(clip.sha256)
            while len(self._known) > self._max_entries:
                self._known.popitem(last=False)

    def cached(self, clip: AudioClip) -> str | None:
        """The transcript if it is already known, without recognising anything."""
        if clip.transcript is not None:
            return clip.transcript
        with self._lock:
            return self._known.get(clip.sha256)
