"""One model step at a time, the most urgent first: how the cascade shares the CPU.

Every CPU-heavy step of every conversation (a clip's transcription, one token
of the chat model, one sentence of synthesis) runs holding the ``ComputeSlot``.
Each step uses all the engine's threads, so steps never fight for the cores
(on a small machine, two models each spinning up their own threads slow both
down), and the slot goes to the waiting step with the earliest deadline.

A conversation's deadline comes from its ``Pace``:

- before its first sound, the time it arrived: conversations are served in
  order of arrival until each is speaking, and within one conversation the
  synthesis of a cut unit goes before more text (``Stage.SPEECH`` ranks first);
- once speaking, the moment its listener would run out of audio (first audio +
  seconds of audio sent) less ``SPEECH_MARGIN_S``: an answer well ahead of its
  listener yields to one that is not, and to newcomers waiting for their first
  sound. This is what keeps first audio low with several conversations at once;
- a text-only answer is paced at ``TEXT_TOKENS_PER_S`` from its arrival.

Steps are not preempted: a long step (transcribing a long clip) delays the
others by its length, which ``SPEECH_MARGIN_S`` is sized to absorb.

This module knows nothing of the models; it orders work.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import S16_BYTES_PER_SAMPLE

T = TypeVar("T")

SPEECH_MARGIN_S = 1.5
TEXT_TOKENS_PER_S = 20.0
CANCEL_POLL_S = 0.05
OUTPUT_BYTES_PER_S = OUTPUT_SAMPLE_RATE * S16_BYTES_PER_SAMPLE  # mono


class Stage(enum.IntEnum):
    """Tie-break between steps of equal deadline: the nearer to a sound, the sooner."""

    SPEECH = 0
    LISTEN = 1
    TEXT = 2


class Pace:
    """How urgent one conversation's next step is; updated by the threads that serve it."""

    def __init__(self, arrived_s: float | None = None, *, speaking: bool = True) -> None:
        self.arrived_s = time.monotonic() if arrived_s is None else arrived_s
        self.speaking = speaking
        self.first_audio_s: float | None = None
        self.audio_s = 0.0
        self.text_tokens = 0

    def spoke(self, n_bytes: int) -> None:
        if self.first_audio_s is None:
            self.first_audio_s = time.monotonic()
        self.audio_s += n_bytes / OUTPUT_BYTES_PER_S

    def wrote(self, n_tokens: int = 1) -> None:
        self.text_tokens += n_tokens

    def deadline_s(self) -> float:
        if self.speaking:
            if self.first_audio_s is None:
                return self.arrived_s
            return self.first_audio_s + self.audio_s - SPEECH_MARGIN_S
        return self.arrived_s + self.text_tokens / TEXT_TOKENS_PER_S


class _Waiter:
    __slots__ = ("granted", "key")

    def __init__(self, key: tuple[float, int, int]) -> None:
        self.key = key
        self.granted = threading.Event()

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class ComputeSlot:
    """An exclusive slot for model steps, granted earliest deadline first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()

    @contextlib.contextmanager
    def hold(
        self, pace: Pace, stage: Stage, cancel: threading.Event | None = None
    ) -> Iterator[bool]:
        """Hold the slot for one step; yields False (without it) once ``cancel`` is set."""
        granted = self._acquire((pace.deadline_s(), int(stage), next(self._order)), cancel)
        try:
            yield granted
        finally:
            if granted:
                self._release()

    def _acquire(self, key: tuple[float, int, int], cancel: threading.Event | None) -> bool:
        with self._lock:
            if not self._busy and not self._waiting:
                self._busy = True
                return True
            waiter = _Waiter(key)
            heapq.heappush(self._waiting, waiter)
        while not waiter.granted.wait(CANCEL_POLL_S if cancel is not None else None):
            if cancel is not None and cancel.is_set():
                with self._lock:
                    if waiter.granted.is_set():  # granted meanwhile: pass it on
                        break
                    self._waiting.remove(waiter)
                    heapq.heapify(self._waiting)
                return False
        if cancel is not None and cancel.is_set():
            self._release()
            return False
        return True

    def _release(self) -> None:
        with self._lock:
            if self._waiting:
                heapq.heappop(self._waiting).granted.set()  # the slot passes on, still busy
            else:
                self._busy = False

    def steps(
        self,
        items: Iterator[T],
        pace: Pace,
        stage: Stage,
        cancel: threading.Event | None = None,
        *,
        after: Callable[[T], None] | None = None,
    ) -> Iterator[T]:
        """``items``, each ``next()`` taken holding the slot; ends early on ``cancel``."""
        while True:
            with self.hold(pace, stage, cancel) as granted:
                if not granted:
                    return
                try:
                    item = next(items)
                except StopIteration:
                    return
            if after is not None:
                after(item)
            yield item
