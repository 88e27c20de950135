"""One model step at a time, the most urgent first: how the cascade shares the CPU.

Every CPU-heavy step of every conversation (a clip's transcription, one token
of the chat model, one window of synthesis) runs holding the ``ComputeSlot``.
Each step uses all the engine's threads, so steps never fight for the cores
(on a small machine, two models each spinning up their own threads slow both
down), and the slot goes to the waiting step with the earliest deadline.

No model here runs twice as fast on two cores as on one (on the 2-core
benchmark machine: a Whisper pass 1.28 x, a Piper unit 1.52 x, a chat token
1.33 x), so two steps side by side, one core each, do more work per second
(1.23-1.26 x). Sharing the cores that way was measured against this slot, two
runs of each, an hour apart: with the chat steps of two heard conversations
side by side, four conversations taking turns got their first audio no sooner
(mean 1.95 and 1.90 s against 1.94 and 1.94 s), back to back once sooner and
once later (2.18 and 2.87 s against 3.06 and 2.54 s), and the server's peak
resident set was ~75 MB higher (1198 and 1203 MiB against 1129 and 1121).
With the voice on one thread as well, beside the chat model, a newcomer's
first unit of speech took 1.5 x as long and its transcription waited behind
other units: worse.

A conversation's deadline comes from its ``Pace``:

- before its first sound, the time it arrived: conversations are served in
  order of arrival until each is speaking, and within one conversation the
  synthesis of a cut unit goes before more text (``Stage.SPEECH`` ranks first);
- once speaking, the moment its listener would run out of audio (first audio +
  seconds of audio sent) less ``SPEECH_MARGIN_S``: an answer well ahead of its
  listener yields to one that is not, and to newcomers waiting for their first
  sound. This is what keeps first audio low with several conversations at once;
- a text-only answer is paced at ``TEXT_TOKENS_PER_S`` from its arrival.

At DEBUG level (logger ``omnivox.scheduler``) every step that waited longer
than ``LOG_WAIT_S`` for the slot, and every recognition or synthesis step, is
logged with its stage, wait, length and how far its deadline was: the first
thing to read when first audio is slow under load.

Between two steps of one conversation its thread does a little work of its
own (passing a token on, cutting a unit), and the slot is free for that
moment. A long step of a less urgent conversation (a ~1 s transcription)
that asked just then, or was already waiting, would take the slot and hold
it up for its whole length, so for ``RESERVE_S`` after a release
(``RESERVE_AFTER_LISTEN_S`` after a transcription) the slot stays reserved
for the conversation that released it: it goes to that conversation, or to
a more urgent one, and to anyone else only once the reservation has lapsed
or that conversation asks again less urgent than it was. (Handing the slot
straight to the best of those already waiting let a transcription in ahead
of a more urgent conversation between two of its tokens: traced with four
conversations taking turns, the slowest first audio of 4.0-4.3 s had waited
1.1-1.5 s that way, behind conversations that had arrived 0.5-2.2 s after
it.)

Steps are not preempted: a long step (transcribing a long clip) delays the
others by its length, which ``SPEECH_MARGIN_S`` is sized to absorb.

This module knows nothing of the models; it orders work.
"""

from __future__ import annotations

import contextlib
import enum
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from omnivox.audio import OUTPUT_BYTES_PER_S

T = TypeVar("T")
log = logging.getLogger("omnivox.scheduler")

SPEECH_MARGIN_S = 1.5
TEXT_TOKENS_PER_S = 20.0
CANCEL_POLL_S = 0.05
LOG_WAIT_S = 0.1
RESERVE_S = 0.005
# After its transcription a conversation builds and tokenises its prompt before its first
# chat step: 11 ms median, 22 ms p90 and up to 0.1 s with four conversations taking turns
# (traced), longer than ``RESERVE_S``, and a waiting transcription of a later conversation
# took the slot for its whole pass in that moment.
RESERVE_AFTER_LISTEN_S = 0.1


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


def _log_step(stage: Stage, asked_s: float, got_s: float, deadline_s: float, now_s: float) -> None:
    waited_s = got_s - asked_s
    if stage is Stage.TEXT and waited_s < LOG_WAIT_S:
        return
    log.debug(
        "%s step: waited %.3f s, held %.3f s, deadline %+.3f s from the request",
        stage.name.lower(),
        waited_s,
        now_s - got_s,
        deadline_s - asked_s,
    )


class _Waiter:
    __slots__ = ("key", "pace", "wake")

    def __init__(self, key: tuple[float, int, int], pace: Pace) -> None:
        self.key = key
        self.pace = pace
        self.wake = threading.Event()  # set when the slot may have come free for it

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class ComputeSlot:
    """An exclusive slot for model steps, granted earliest deadline first.

    Every step that asks joins one queue, ordered by (deadline, stage, arrival);
    a free slot goes to the head of the queue unless it is reserved for a more
    urgent conversation that has just released it (see ``RESERVE_S``). A
    release wakes the head only; the head, finding the slot reserved, sleeps
    until the reservation lapses or its owner asks again, and looks again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock  # a seam: tests move time by hand to make reservations exact
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()
        self._holder: tuple[Pace, tuple[float, int]] | None = None
        self._reserved: tuple[Pace, tuple[float, int]] | None = None
        self._reserved_until_s = 0.0

    @property
    def waiting(self) -> int:
        """How many steps wait for the slot: how a test knows that a step has queued."""
        with self._lock:  # so that a step's look at the slot is over, or not begun
            return len(self._waiting)

    @contextlib.contextmanager
    def hold(
        self, pace: Pace, stage: Stage, cancel: threading.Event | None = None
    ) -> Iterator[bool]:
        """Hold the slot for one step; yields False (without it) once ``cancel`` is set."""
        deadline_s = pace.deadline_s()
        asked_s = self._clock()
        granted = self._acquire(pace, (deadline_s, int(stage), next(self._order)), cancel)
        got_s = self._clock()
        try:
            yield granted
        finally:
            if granted:
                self._release(RESERVE_AFTER_LISTEN_S if stage is Stage.LISTEN else RESERVE_S)
                if log.isEnabledFor(logging.DEBUG):
                    _log_step(stage, asked_s, got_s, deadline_s, self._clock())

    def _acquire(
        self, pace: Pace, key: tuple[float, int, int], cancel: threading.Event | None
    ) -> bool:
        waiter = _Waiter(key, pace)
        with self._lock:
            heapq.heappush(self._waiting, waiter)
            if not self._busy and self._waiting[0] is not waiter:
                self._waiting[0].wake.set()  # a reservation it waits out may be void now
        while True:
            with self._lock:
                if cancel is not None and cancel.is_set():
                    self._leave(waiter)
                    return False
                wait_s = self._take(waiter)
                if wait_s is None:
                    return True
                waiter.wake.clear()
            if cancel is not None:
                wait_s = min(wait_s, CANCEL_POLL_S)
            waiter.wake.wait(None if wait_s == math.inf else wait_s)

    def _take(self, waiter: _Waiter) -> float | None:
        """Give ``waiter`` the slot (None), or say how long to wait before looking again
        (``math.inf``: until woken). The lock is held."""
        if self._busy or self._waiting[0] is not waiter:
            return math.inf
        lapse_s = self._reservation_lapse_s(waiter.pace, waiter.key)
        if lapse_s > 0:
            return lapse_s
        heapq.heappop(self._waiting)
        self._busy = True
        self._holder = (waiter.pace, waiter.key[:2])
        self._reserved = None
        return None

    def _leave(self, waiter: _Waiter) -> None:
        """Take a cancelled ``waiter`` out of the queue (the lock is held)."""
        self._waiting.remove(waiter)
        heapq.heapify(self._waiting)
        if self._waiting and not self._busy:
            self._waiting[0].wake.set()

    def _reservation_lapse_s(self, pace: Pace, key: tuple[float, int, int]) -> float:
        """How long ``pace`` must leave the free slot to the one that just released it."""
        if self._reserved is None:
            return 0.0
        owner, owner_key = self._reserved
        left_s = self._reserved_until_s - self._clock()
        if owner is pace or key[:2] < owner_key or left_s <= 0:
            return 0.0
        if any(w.pace is owner for w in self._waiting):
            return 0.0  # it came back less urgent than it was (it spoke): it waits its turn
        return left_s

    def _release(self, reserve_s: float) -> None:
        with self._lock:
            self._busy = False
            self._reserved = self._holder
            self._reserved_until_s = self._clock() + reserve_s
            self._holder = None
            if self._waiting:
                self._waiting[0].wake.set()

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
