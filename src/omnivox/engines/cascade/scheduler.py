"""Model steps shared out over the engine's cores, the most urgent first.

Every CPU-heavy step of every conversation (a clip's transcription, one token
of the chat model, one unit of synthesis) runs holding cores of the
``ComputeSlot``, which has as many as the engine has threads. A step says how
many it can use (``Width``):

- a recogniser's pass and a unit of synthesis need them all (``ALL_CORES``:
  CTranslate2's and onnxruntime's thread counts are fixed when the model loads);
- a chat model step uses one or more (``ANY_CORES``; llama.cpp's thread count
  is set per step): every free core, unless another waiting step could use
  what it leaves, and then one; a conversation whose listener has heard
  nothing yet always takes every free core.

No model runs twice as fast on two cores as on one: on the 2-core machine of
the benchmarks a chat token is 1.33 x faster on two threads than on one, and
two tokens of two conversations side by side, one core each, end 1.23 x sooner
than one after the other on both. So two conversations that are both writing
write side by side, while a newcomer's steps, on the way to its first sound,
never share a core. (Whisper and Piper gain as much from side by side steps,
1.23 x and 1.26 x, but on one thread each the passes and first units on a
newcomer's way to its first sound took 1.3 x and 1.5 x as long, and four
conversations taking turns waited longer for their first audio.)
Steps never oversubscribe the cores: a step's threads are the cores it holds.

Cores go to the waiting step with the earliest deadline. A conversation's
deadline comes from its ``Pace``:

- before its first sound, the time it arrived: conversations are served in
  order of arrival until each is speaking, and within one conversation the
  synthesis of a cut unit goes before more text (``Stage.SPEECH`` ranks first);
- once speaking, the moment its listener would run out of audio (first audio +
  seconds of audio sent) less ``SPEECH_MARGIN_S``: an answer well ahead of its
  listener yields to one that is not, and to newcomers waiting for their first
  sound. This is what keeps first audio low with several conversations at once;
- a text-only answer is paced at ``TEXT_TOKENS_PER_S`` from its arrival.

The most urgent waiting step is served first: while it waits for cores (a
transcription waiting for the end of another conversation's chat step), later
steps do not take the ones that free up before it.

At DEBUG level (logger ``omnivox.scheduler``) every step that waited longer
than ``LOG_WAIT_S``, and every recognition or synthesis step, is logged with
its stage, wait, length, cores and how far its deadline was: the first thing to
read when first audio is slow under load.

Between two steps of one conversation its thread does a little work of its
own (passing a token on, cutting a unit), and its cores are free for that
moment. A long step of a less urgent conversation (a ~1 s transcription) that
asked just then would take them and hold them up for its whole length, so for
``RESERVE_S`` after a release that leaves no one waiting, one core (every
core, before its first sound) stays reserved for the conversation that
released it: it goes to that conversation, or to a more urgent one, and to
anyone else only once the reservation has lapsed.

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
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from omnivox.audio import OUTPUT_SAMPLE_RATE
from omnivox.audio.pcm import S16_BYTES_PER_SAMPLE

T = TypeVar("T")
log = logging.getLogger("omnivox.scheduler")

SPEECH_MARGIN_S = 1.5
TEXT_TOKENS_PER_S = 20.0
CANCEL_POLL_S = 0.05
LOG_WAIT_S = 0.1
RESERVE_S = 0.005
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

    @property
    def unheard(self) -> bool:
        """A spoken answer whose listener has heard nothing yet: its steps take every core."""
        return self.speaking and self.first_audio_s is None

    def wrote(self, n_tokens: int = 1) -> None:
        self.text_tokens += n_tokens

    def deadline_s(self) -> float:
        if self.speaking:
            if self.first_audio_s is None:
                return self.arrived_s
            return self.first_audio_s + self.audio_s - SPEECH_MARGIN_S
        return self.arrived_s + self.text_tokens / TEXT_TOKENS_PER_S


class Width:
    """How many cores a step can use: at least ``least``, at most ``most`` (None: all)."""

    __slots__ = ("least", "most")

    def __init__(self, least: int | None, most: int | None) -> None:
        self.least = least
        self.most = most

    def span(self, cores: int) -> tuple[int, int]:
        least = cores if self.least is None else min(self.least, cores)
        most = cores if self.most is None else min(self.most, cores)
        return least, max(least, most)


ALL_CORES = Width(None, None)
ANY_CORES = Width(1, None)


def _log_step(stage: Stage, asked_s: float, got_s: float, deadline_s: float, cores: int) -> None:
    waited_s = got_s - asked_s
    if stage is Stage.TEXT and waited_s < LOG_WAIT_S:
        return
    log.debug(
        "%s step: waited %.3f s, held %.3f s on %d core%s, deadline %+.3f s from the request",
        stage.name.lower(),
        waited_s,
        time.monotonic() - got_s,
        cores,
        "" if cores == 1 else "s",
        deadline_s - asked_s,
    )


class _Waiter:
    __slots__ = ("cores", "granted", "key", "least", "most", "pace")

    def __init__(self, key: tuple[float, int, int], pace: Pace, least: int, most: int) -> None:
        self.key = key
        self.pace = pace
        self.least = least
        self.most = most
        self.cores = 0
        self.granted = threading.Event()

    def __lt__(self, other: _Waiter) -> bool:
        return self.key < other.key


class ComputeSlot:
    """The engine's cores, lent to model steps earliest deadline first."""

    def __init__(self, cores: int = 1) -> None:
        if cores < 1:
            raise ValueError("a compute slot needs at least one core")
        self.cores = cores
        self._lock = threading.Lock()
        self._free = cores
        self._running = 0  # steps holding cores
        self._waiting: list[_Waiter] = []
        self._order = itertools.count()
        self._reserved: tuple[Pace, tuple[float, int]] | None = None
        self._reserved_until_s = 0.0
        self.peak_steps = 0  # the most steps that ran at once

    @property
    def busy_cores(self) -> int:
        return self.cores - self._free

    @contextlib.contextmanager
    def hold(
        self,
        pace: Pace,
        stage: Stage,
        cancel: threading.Event | None = None,
        width: Width = ALL_CORES,
    ) -> Iterator[int]:
        """Hold cores for one step; yields how many (0, without any, once ``cancel`` is set)."""
        deadline_s = pace.deadline_s()
        asked_s = time.monotonic()
        least, most = width.span(self.cores)
        waiter = _Waiter((deadline_s, int(stage), next(self._order)), pace, least, most)
        cores = self._acquire(waiter, cancel)
        got_s = time.monotonic()
        try:
            yield cores
        finally:
            if cores:
                self._release(waiter)
                if log.isEnabledFor(logging.DEBUG):
                    _log_step(stage, asked_s, got_s, deadline_s, cores)

    def _acquire(self, waiter: _Waiter, cancel: threading.Event | None) -> int:
        with self._lock:
            heapq.heappush(self._waiting, waiter)
            retry_s = self._dispatch()
        while not waiter.granted.wait(min(CANCEL_POLL_S, retry_s) if retry_s else CANCEL_POLL_S):
            with self._lock:
                if waiter.granted.is_set():
                    break
                if cancel is not None and cancel.is_set():
                    self._waiting.remove(waiter)
                    heapq.heapify(self._waiting)
                    self._dispatch()
                    return 0
                retry_s = self._dispatch()  # a reservation may have lapsed
        if cancel is not None and cancel.is_set():
            self._release(waiter)
            return 0
        return waiter.cores

    def _release(self, waiter: _Waiter) -> None:
        with self._lock:
            self._free += waiter.cores
            self._running -= 1
            if not self._waiting:
                self._reserved = (waiter.pace, waiter.key[:2])
                self._reserved_until_s = time.monotonic() + RESERVE_S
            self._dispatch()

    def _dispatch(self) -> float:
        """Grant cores to waiters, most urgent first, while they fit (the lock held).

        Returns how long until a reservation that holds back the most urgent waiter
        lapses (0: none does).
        """
        retry_s = 0.0
        while self._waiting:
            head = self._waiting[0]
            kept, left_s = self._kept_for_reservation(head)
            available = self._free - kept
            if head.least > available:
                if head.least > self._free:
                    break  # it waits for cores, and no one later goes before it
                owner = self._reservation_owner()
                if owner is None or owner.least > self._free:
                    retry_s = left_s  # try again once the reservation lapses
                    break
                head = owner  # the core was kept for it
                self._waiting.remove(owner)
                heapq.heapify(self._waiting)
            else:
                heapq.heappop(self._waiting)
            available = self._free - self._kept_for_reservation(head)[0]
            spare = available - head.least
            shares = not head.pace.unheard and any(w.least <= spare for w in self._waiting)
            self._grant(head, head.least if shares else min(head.most, available))
        return retry_s

    def _reservation_owner(self) -> _Waiter | None:
        """The waiting step of the conversation a core is reserved for, if it asked."""
        if self._reserved is None:
            return None
        owner = self._reserved[0]
        return next((w for w in self._waiting if w.pace is owner), None)

    def _kept_for_reservation(self, waiter: _Waiter) -> tuple[int, float]:
        """Cores ``waiter`` must leave to the conversation between two steps, and for how long."""
        if self._reserved is None:
            return 0, 0.0
        owner, owner_key = self._reserved
        left_s = self._reserved_until_s - time.monotonic()
        if owner is waiter.pace or waiter.key[:2] < owner_key or left_s <= 0:
            return 0, 0.0
        return (self.cores if owner.unheard else 1), left_s

    def _grant(self, waiter: _Waiter, cores: int) -> None:
        self._free -= cores
        self._running += 1
        self.peak_steps = max(self.peak_steps, self._running)
        if self._reserved is not None and self._reserved[0] is waiter.pace:
            self._reserved = None
        waiter.cores = cores
        waiter.granted.set()

    def steps(
        self,
        items: Iterator[T],
        pace: Pace,
        stage: Stage,
        cancel: threading.Event | None = None,
        *,
        width: Width = ALL_CORES,
        use_cores: Callable[[int], None] | None = None,
        after: Callable[[T], None] | None = None,
    ) -> Iterator[T]:
        """``items``, each ``next()`` taken holding cores; ends early on ``cancel``.

        ``use_cores`` is told how many cores each step holds, before it runs.
        """
        while True:
            with self.hold(pace, stage, cancel, width) as cores:
                if not cores:
                    return
                if use_cores is not None:
                    use_cores(cores)
                try:
                    item = next(items)
                except StopIteration:
                    return
            if after is not None:
                after(item)
            yield item
