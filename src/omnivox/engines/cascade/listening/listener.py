"""Clips that wait for the recogniser at the same time are heard in one pass.

Each conversation's ``prepare`` calls ``Listener.hear`` with the clips of its
request that have no transcript yet. A clip's speech is found first (the VAD,
outside the model slot), then it joins the waiting line, and the thread waits
for the slot (``hold``: the cascade's one-step-at-a-time scheduler). Whoever
gets the slot takes the line from its front, as many clips as one Whisper
window holds (``recogniser.WINDOW_S``), hears them in one pass
(``transcribe_clips``) and hands every clip its words; a thread whose clip was
heard in another's pass gives the slot back at once. A Whisper pass costs the
same whatever its window holds, so when four conversations speak at once the
last no longer waits for three passes before its own.

The same clip asked for twice while it waits (two requests with one history) is
heard once. A pass that fails fails every request whose clip was in it, and
only those: the thread that ran it may have been waiting for another clip.

This module knows nothing of Whisper or of the slot's order; it batches.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from omnivox.engines.base import AudioClip
from omnivox.engines.cascade.listening.recogniser import GAP_S, SAMPLE_RATE, WINDOW_S
from omnivox.engines.cascade.listening.transcripts import TranscriptBook


class PackingRecogniser(Protocol):
    def speech(self, samples: np.ndarray) -> list[np.ndarray]: ...
    def transcribe_clips(self, clips: Sequence[Sequence[np.ndarray]]) -> list[str]: ...


@dataclass(eq=False)
class _Waiting:
    clip: AudioClip
    chunks: list[np.ndarray]
    done: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None

    @property
    def window_s(self) -> float:
        """What the clip takes of a window: its speech, and a gap between its chunks."""
        speech_s = sum(len(chunk) for chunk in self.chunks) / SAMPLE_RATE
        return speech_s + GAP_S * max(0, len(self.chunks) - 1)


class HearingFailedError(RuntimeError):
    """The recogniser failed on a pass that held this request's clip."""


class Listener:
    def __init__(self, book: TranscriptBook, recogniser: PackingRecogniser) -> None:
        self.book = book
        self.recogniser = recogniser
        self._line: list[_Waiting] = []
        self._by_sha: dict[str, _Waiting] = {}
        self._lock = threading.Lock()
        self.passes = 0  # calls of transcribe_clips (one window each, unless it overflows)
        self.clips_heard = 0

    def hear(
        self, clips: Sequence[AudioClip], hold: Callable[[], AbstractContextManager[Any]]
    ) -> None:
        """Transcribe ``clips`` into the book, sharing passes with other threads."""
        waiting = [self._join(clip) for clip in clips if self.book.cached(clip) is None]
        for entry in waiting:
            while not entry.done.is_set():
                with hold():
                    if not entry.done.is_set():
                        self._one_pass()
            if entry.error is not None:
                raise HearingFailedError(
                    f"speech recognition failed: {entry.error}"
                ) from entry.error

    def _join(self, clip: AudioClip) -> _Waiting:
        with self._lock:
            known = self._by_sha.get(clip.sha256)
        if known is not None:
            return known
        chunks = self.recogniser.speech(self.book.samples(clip))
        with self._lock:
            known = self._by_sha.get(clip.sha256)
            if known is not None:
                return known
            entry = _Waiting(clip, chunks)
            if self.book.cached(clip) is not None:  # heard meanwhile (remembered, then let go)
                entry.done.set()
                return entry
            self._by_sha[clip.sha256] = entry
            self._line.append(entry)
            return entry

    def _take(self) -> list[_Waiting]:
        """The front of the line, as many clips as one window holds (at least one)."""
        with self._lock:
            taken: list[_Waiting] = []
            used_s = 0.0
            for entry in self._line:
                need_s = entry.window_s + (GAP_S if taken else 0.0)
                if taken and used_s + need_s > WINDOW_S:
                    break
                taken.append(entry)
                used_s += need_s
            del self._line[: len(taken)]
            return taken

    def _one_pass(self) -> None:
        batch = self._take()
        if not batch:
            return
        try:
            texts = self.recogniser.transcribe_clips([entry.chunks for entry in batch])
            self.passes += 1
            self.clips_heard += len(batch)
            for entry, text in zip(batch, texts, strict=True):
                self.book.remember(entry.clip, text)
        except Exception as exc:  # told to each request of the pass, in its own thread
            for entry in batch:
                entry.error = exc
        finally:
            with self._lock:
                for entry in batch:
                    self._by_sha.pop(entry.clip.sha256, None)
            for entry in batch:
                entry.done.set()
