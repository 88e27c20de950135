"""One model step at a time, the most urgent first: how the cascade shares the CPU.

Every CPU-heavy step of every conversation (a clip's transcription, one token
of the chat model, one window of synthesis) runs holding the ``ComputeSlot``
with all the engine's threads, so steps never fight for the cores, and the slot
goes to the waiting step with the earliest deadline. A conversation's ``Pace``
sets it: before its first sound, its arrival (within a conversation
``Stage.SPEECH`` ranks first); once speaking, the moment its listener would run
out of audio, less ``SPEECH_MARGIN_S``, so an answer ahead of its listener
yields to newcomers; a text-only answer is paced at ``TEXT_TOKENS_PER_S``; background work
(a batch's line) comes after every other step, in arrival order. For
``RESERVE_S`` after a release (``RESERVE_AFTER_LISTEN_S`` after a transcription)
the slot stays reserved for the conversation that released it, so that a long,
less urgent step can not slip in between two of its steps. Steps are not
preempted. At DEBUG, logger ``omnivox.scheduler`` logs waits over ``LOG_WAIT_S``
and every recognition and synthesis step. Why the cores are not split between
steps: docs/performance.md. This module knows nothing of the models.
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
BACKGROUND_DELAY_S = 1e6  # a background step's deadline: later than any other's
TEXT_TOKENS_PER_S = 20.0
CANCEL_POLL_S = 0.05
LOG_WAIT_S = 0.1
RESERVE_S = 0.005
# After its transcription a conversation builds and tokenises its prompt before its first
# chat step: 11 ms median, 22 ms p90 and up to 0.1 s with four conversations taking turns
# (traced), longer than ``RESERVE_S``, and a waiting transcription of a later conversation
# took the slot for its whole pass in that moment.
RESERVE_AFTER_LISTEN_S = 0.1
RECENT_KEPT = 16  # the conversations that let the slot go last, for ``calm``


class Stage(enum.IntEnum):
    """Tie-break between steps of equal deadline: the nearer to a sound, the sooner."""

    SPEECH = 0
    LISTEN = 1
    TEXT = 2


class Pace:
    """How urgent one conversation's next step is; updated by the threads that serve it."""

    def __init__(
        self, arrived_s: float | None = None, *, speaking: bool = True, background: bool = False
    ) -> None:
        self.arrived_s = time.monotonic() if arrived_s is None else arrived_s
        self.speaking = speaking
        self.background = background
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
        if self.background:  # after every other step; among themselves, in arrival order
            return self.arrived_s + BACKGROUND_DELAY_S
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

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = False
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()
        self._holder: tuple[Pace, tuple[float, int]] | None = None
        self._reserved: tuple[Pace, tuple[float, int]] | None = None
        self._reserved_until_s = 0.0
        self._held_since_s: float | None = None  # when the current step got the slot
        self._held_s = 0.0  # the slot's steps so far, added up when each lets it go
        self._recent: dict[Pace, float] = {}  # who let it go lately, and when, oldest first

    @property
    def waiting_count(self) -> int:
        """How many steps wait for the slot now."""
        return len(self._waiting)

    @property
    def busy_s(self) -> float:
        """Seconds the slot has been held since it was made, the current step's so far
        included: it never decreases."""
        with self._lock:
            since_s = self._held_since_s
            if since_s is None:
                return self._held_s
            return self._held_s + max(0.0, self._now() - since_s)

    def calm(self, horizon_s: float, quiet_s: float) -> bool:
        """Whether a step begun now and holding the slot for up to ``horizon_s`` would make
        no conversation late: none that holds the slot, waits for it or let it go less than
        ``quiet_s`` ago (it may be between two steps) has a deadline within ``horizon_s``.
        Background work, and an answer well ahead of its listener, are never late so."""
        with self._lock:
            now_s = self._now()
            paces = [waiter.pace for waiter in self._waiting]
            if self._holder is not None:
                paces.append(self._holder[0])
            paces += [pace for pace, at_s in self._recent.items() if now_s - at_s < quiet_s]
        return all(pace.background or pace.deadline_s() >= now_s + horizon_s for pace in paces)

    def _now(self) -> float:
        """The clock that reservations are timed on: the paces' own (``time.monotonic``),
        as ``calm`` compares the two."""
        return time.monotonic()

    @contextlib.contextmanager
    def hold(
        self, pace: Pace, stage: Stage, cancel: threading.Event | None = None
    ) -> Iterator[bool]:
        """Hold the slot for one step; yields False (without it) once ``cancel`` is set."""
        deadline_s = pace.deadline_s()
        asked_s = self._now()
        granted = self._acquire(pace, (deadline_s, int(stage), next(self._order)), cancel)
        got_s = self._now()
        if granted:
            self._held_since_s = got_s
        try:
            yield granted
        finally:
            if granted:
                self._release(RESERVE_AFTER_LISTEN_S if stage is Stage.LISTEN else RESERVE_S)
                if log.isEnabledFor(logging.DEBUG):
                    _log_step(stage, asked_s, got_s, deadline_s, self._now())

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
        left_s = self._reserved_until_s - self._now()
        if owner is pace or key[:2] < owner_key or left_s <= 0:
            return 0.0
        if any(w.pace is owner for w in self._waiting):
            return 0.0  # it came back less urgent than it was (it spoke): it waits its turn
        return left_s

    def _release(self, reserve_s: float) -> None:
        with self._lock:
            now_s = self._now()
            if self._held_since_s is not None:
                self._held_s += max(0.0, now_s - self._held_since_s)
                self._held_since_s = None
            self._busy = False
            if self._holder is not None and not self._holder[0].background:
                self._recent.pop(self._holder[0], None)  # (to the end: the newest)
                self._recent[self._holder[0]] = now_s
                if len(self._recent) > RECENT_KEPT:
                    del self._recent[next(iter(self._recent))]
            self._reserved = self._holder
            self._reserved_until_s = now_s + reserve_s
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
