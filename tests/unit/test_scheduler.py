"""The cascade's compute slot: one step at a time, earliest deadline first.

Threads are ordered by what the slot shows (a step waits in its queue), never by
sleeping; reservations are timed on a ``FakeClock`` that moves only when a test
moves it, so no test depends on how fast or how busy the host is.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from omnivox.audio import OUTPUT_BYTES_PER_S
from omnivox.engines.cascade import scheduler
from omnivox.engines.cascade.engine import IDLE_AFTER_S, SPARE_STEP_S, CascadeEngine
from omnivox.engines.cascade.scheduler import (
    RESERVE_AFTER_LISTEN_S,
    RESERVE_S,
    SPEECH_MARGIN_S,
    TEXT_TOKENS_PER_S,
    ComputeSlot,
    Pace,
    Stage,
)

# how long a test waits for something that happens at once on an idle host: only a
# broken slot, never a slow host, runs into it
DEADLINE_S = 10.0
# steps run on daemon threads: one that a broken slot never lets go fails its test, and does
# not keep pytest from exiting


class FakeClock:
    """Seconds that pass only when the test moves them, and how often each thread read them.

    A step that waits out a reservation reads the clock each time it looks at the free
    slot and then sleeps, in real time, for what it found left of the reservation: the
    tests keep the module's short reservations, so that it soon looks again, unless they
    mean it not to.
    """

    def __init__(self, now_s: float = 10.0) -> None:
        self.now_s = now_s
        self._reads: Counter[int | None] = Counter()
        self._read = threading.Condition()

    def __call__(self) -> float:
        with self._read:
            self._reads[threading.get_ident()] += 1
            self._read.notify_all()
            return self.now_s

    def advance(self, seconds: float) -> None:
        with self._read:
            self.now_s += seconds

    def move_to(self, now_s: float) -> None:
        with self._read:
            self.now_s = now_s

    def reads(self, thread: threading.Thread) -> int:
        with self._read:
            return self._reads[thread.ident]

    def wait_for_reads(self, thread: threading.Thread, n: int) -> None:
        with self._read:
            read = self._read.wait_for(lambda: self._reads[thread.ident] >= n, DEADLINE_S)
        assert read, "the step never looked at the slot"


class WatchedSlot(ComputeSlot):
    """The slot on the test's clock, showing how many steps wait in its queue."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.clock = clock

    def _now(self) -> float:
        return self.clock()

    @property
    def waiting(self) -> int:
        """How many steps wait for the slot: how a test knows that a step has queued."""
        with self._lock:  # so that a step's look at the slot is over, or not begun
            return len(self._waiting)


def wait_for_waiters(slot: WatchedSlot, n: int, granted: threading.Event | None = None) -> None:
    """Return once ``n`` steps wait for the slot (or the step that sets ``granted`` got it)."""
    deadline_s = time.monotonic() + DEADLINE_S
    while slot.waiting < n and not (granted is not None and granted.is_set()):
        assert time.monotonic() < deadline_s, "waiters never queued"
        time.sleep(0.005)


def queue_step(
    slot: WatchedSlot, pace: Pace, stage: Stage, on_grant: Callable[[], object]
) -> threading.Thread:
    """A step of ``pace`` on a thread of its own, returned once it waits in the queue
    (or, asking a free slot, once it got it)."""
    queued = slot.waiting
    granted = threading.Event()

    def step() -> None:
        with slot.hold(pace, stage) as ok:
            assert ok
            granted.set()
            on_grant()

    thread = threading.Thread(target=step, daemon=True)
    thread.start()
    wait_for_waiters(slot, queued + 1, granted)
    return thread


def still_waits_after_looking(
    clock: FakeClock,
    slot: WatchedSlot,
    thread: threading.Thread,
    looks: int = 2,
    since: int | None = None,
) -> None:
    """Return once the step on ``thread``, first in the queue of a free slot, has looked at
    the slot ``looks`` times since this call (or since it had read the clock ``since``
    times) and left it alone.

    It reads the clock in each look, holding the slot's lock, which ``slot.waiting`` takes
    too: once it has read the clock, that look is over when ``waiting`` answers, and had it
    taken the slot, the step would have left the queue. A second look proves the same
    without relying on the lock.
    """
    taken = "it took the slot while the slot was reserved for another"
    assert slot.waiting == 1, taken
    clock.wait_for_reads(thread, (clock.reads(thread) if since is None else since) + looks)
    assert slot.waiting == 1, taken


def finish(thread: threading.Thread) -> None:
    thread.join(DEADLINE_S)
    assert not thread.is_alive(), "a step never finished: it never got the slot, or kept it"


def test_a_pace_is_urgent_until_it_speaks_then_as_urgent_as_its_listener() -> None:
    pace = Pace(arrived_s=100.0)
    assert pace.deadline_s() == 100.0
    pace.spoke(3 * OUTPUT_BYTES_PER_S)
    assert pace.first_audio_s is not None
    assert pace.deadline_s() == pace.first_audio_s + 3.0 - SPEECH_MARGIN_S
    text = Pace(arrived_s=50.0, speaking=False)
    text.wrote(10)
    assert text.deadline_s() == 50.0 + 10 / TEXT_TOKENS_PER_S


def test_the_slot_goes_to_the_earliest_deadline_then_to_speech_before_text() -> None:
    slot = WatchedSlot()
    granted: list[str] = []

    def step(name: str, pace: Pace, stage: Stage) -> None:
        with slot.hold(pace, stage) as ok:
            assert ok
            granted.append(name)

    with slot.hold(Pace(arrived_s=0.0), Stage.TEXT):
        threads = []
        for name, arrived_s, stage in (
            ("late", 30.0, Stage.TEXT),
            ("early text", 10.0, Stage.TEXT),
            ("middle", 20.0, Stage.LISTEN),
            ("early speech", 10.0, Stage.SPEECH),
        ):
            thread = threading.Thread(target=step, args=(name, Pace(arrived_s), stage), daemon=True)
            thread.start()
            threads.append(thread)
            wait_for_waiters(slot, len(threads))
    for thread in threads:
        finish(thread)
    assert granted == ["early speech", "early text", "middle", "late"]


def test_background_steps_wait_behind_every_other_step_in_arrival_order() -> None:
    slot = WatchedSlot()
    granted: list[str] = []

    def step(name: str, pace: Pace) -> None:
        with slot.hold(pace, Stage.TEXT) as ok:
            assert ok
            granted.append(name)

    with slot.hold(Pace(arrived_s=0.0), Stage.TEXT):
        threads = []
        for name, pace in (
            ("batch 1", Pace(1.0, speaking=False, background=True)),
            ("batch 2", Pace(2.0, speaking=True, background=True)),
            ("late interactive", Pace(1e5, speaking=False)),
        ):
            thread = threading.Thread(target=step, args=(name, pace), daemon=True)
            thread.start()
            threads.append(thread)
            wait_for_waiters(slot, len(threads))
    for thread in threads:
        finish(thread)
    assert granted == ["late interactive", "batch 1", "batch 2"]


def test_a_cancelled_waiter_leaves_without_the_slot_and_blocks_no_one() -> None:
    slot = WatchedSlot()
    cancel = threading.Event()
    outcome: list[bool] = []

    def waiter() -> None:
        with slot.hold(Pace(arrived_s=1.0), Stage.TEXT, cancel) as ok:
            outcome.append(ok)

    with slot.hold(Pace(arrived_s=0.0), Stage.TEXT):
        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        wait_for_waiters(slot, 1)
        cancel.set()
        finish(thread)
    assert outcome == [False]
    with slot.hold(Pace(), Stage.TEXT) as ok:  # free again
        assert ok


def test_steps_hold_the_slot_during_each_next_only() -> None:
    slot = WatchedSlot()
    held_during_next: list[bool] = []

    def items() -> Iterator[int]:
        for i in range(3):
            held_during_next.append(slot._busy)
            yield i

    seen: list[tuple[int, bool]] = []
    for item in slot.steps(items(), Pace(), Stage.TEXT):
        seen.append((item, slot._busy))
    assert seen == [(0, False), (1, False), (2, False)]
    assert held_during_next == [True, True, True]


def test_two_threads_never_hold_the_slot_at_once() -> None:
    slot = WatchedSlot()
    inside = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        pace = Pace()
        for _ in range(200):
            with slot.hold(pace, Stage.TEXT):
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work, daemon=True) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        finish(thread)
    assert most == 1


def test_debug_logging_names_slow_waits_and_every_speech_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock(now_s=10.0)
    slot = WatchedSlot(clock)
    caplog.set_level(logging.DEBUG, logger="omnivox.scheduler")
    # each step more urgent than the one before, so that none waits out a reservation
    with slot.hold(Pace(arrived_s=9.0), Stage.TEXT):
        pass  # a text step that did not wait: not worth a line
    with slot.hold(Pace(arrived_s=8.0), Stage.SPEECH):
        clock.advance(0.02)
    first = threading.Event()

    def hold_a_while() -> None:
        with slot.hold(Pace(arrived_s=7.0), Stage.SPEECH):
            first.set()
            wait_for_waiters(slot, 1)  # the text step waits behind this one...
            clock.advance(0.15)  # ...for 0.15 s

    holder = threading.Thread(target=hold_a_while, daemon=True)
    holder.start()
    assert first.wait(DEADLINE_S)
    with slot.hold(Pace(arrived_s=6.0), Stage.TEXT):
        pass
    finish(holder)
    lines = [r.getMessage() for r in caplog.records if r.name == "omnivox.scheduler"]
    assert (
        lines[0] == "speech step: waited 0.000 s, held 0.020 s, deadline -2.000 s from the request"
    )
    assert sorted(lines[1:]) == [  # the text step that did not wait is not among them
        "speech step: waited 0.000 s, held 0.150 s, deadline -3.020 s from the request",
        "text step: waited 0.150 s, held 0.000 s, deadline -4.020 s from the request",
    ]


def test_a_conversation_between_two_steps_keeps_the_slot_from_a_later_one() -> None:
    clock = FakeClock()  # time stands still: the reservation lasts until the test moves it
    slot = WatchedSlot(clock)
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []

    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 1")
    # asks while the urgent conversation is between two steps: the slot is free
    thread = queue_step(slot, later, Stage.LISTEN, lambda: order.append("later"))
    still_waits_after_looking(clock, slot, thread)
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 2")
    clock.advance(RESERVE_S)  # the urgent conversation is done: its reservation lapses
    finish(thread)
    assert order == ["urgent 1", "urgent 2", "later"]


def test_a_reservation_lapses_when_its_conversation_does_not_come_back() -> None:
    clock = FakeClock()
    slot = WatchedSlot(clock)
    got_s: list[float] = []
    with slot.hold(Pace(arrived_s=1.0), Stage.TEXT):
        pass
    released_s = clock()
    thread = queue_step(slot, Pace(arrived_s=2.0), Stage.LISTEN, lambda: got_s.append(clock()))
    still_waits_after_looking(clock, slot, thread)
    clock.advance(RESERVE_S)
    finish(thread)
    assert got_s == [released_s + RESERVE_S]
    # more urgent than the conversation the slot is now reserved for: it does not wait, for
    # the clock stands still and the reservation would never lapse
    urgent_got = threading.Event()

    def urgent_step() -> None:
        with slot.hold(Pace(arrived_s=0.5), Stage.LISTEN):
            urgent_got.set()

    thread = threading.Thread(target=urgent_step, daemon=True)
    thread.start()
    assert urgent_got.wait(DEADLINE_S)
    finish(thread)


def test_a_conversation_between_two_steps_keeps_the_slot_from_a_later_one_already_waiting() -> None:
    clock = FakeClock()
    slot = WatchedSlot(clock)
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []

    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 1")
        # the later one waits before the urgent one releases
        thread = queue_step(slot, later, Stage.LISTEN, lambda: order.append("later"))
    still_waits_after_looking(clock, slot, thread)
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 2")
    clock.advance(RESERVE_S)
    finish(thread)
    assert order == ["urgent 1", "urgent 2", "later"]


def test_a_waiting_conversation_gets_the_slot_once_the_reservation_lapses() -> None:
    clock = FakeClock()
    slot = WatchedSlot(clock)
    got_s: list[float] = []

    with slot.hold(Pace(arrived_s=1.0), Stage.TEXT):
        later = Pace(arrived_s=2.0)
        thread = queue_step(slot, later, Stage.LISTEN, lambda: got_s.append(clock()))
    released_s = clock()
    # the urgent conversation never comes back
    still_waits_after_looking(clock, slot, thread)
    clock.advance(RESERVE_S / 2)
    still_waits_after_looking(clock, slot, thread)  # not before the reservation lapses
    clock.move_to(released_s + RESERVE_S)  # as the slot reckons it: no rounding apart
    finish(thread)
    assert got_s == [released_s + RESERVE_S]


def test_a_reservation_ends_when_its_conversation_comes_back_less_urgent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # a reservation far longer than the test may take: the newcomer, having looked once,
    # sleeps until it lapses unless the speaker's return wakes it
    monkeypatch.setattr(scheduler, "RESERVE_S", 60.0)
    clock = FakeClock()  # time stands still: only its owner's return can end the reservation
    slot = WatchedSlot(clock)
    speaking = Pace(arrived_s=clock() - 5.0)
    speaking.first_audio_s = clock()
    order: list[str] = []
    newcomer_got = threading.Event()

    def newcomer_granted() -> None:
        order.append("newcomer")
        newcomer_got.set()

    def speaking_step() -> None:
        with slot.hold(speaking, Stage.SPEECH):
            order.append("speaking")

    with slot.hold(speaking, Stage.SPEECH):
        newcomer = Pace(arrived_s=clock())
        thread = queue_step(slot, newcomer, Stage.LISTEN, newcomer_granted)
        speaking.spoke(10 * OUTPUT_BYTES_PER_S)  # 10 s ahead of its listener now
        # a step does not read the clock while the slot is busy: its next look is after
        # the release, and its only one for 60 s
        seen = clock.reads(thread)
    # the slot is reserved for the speaker...
    still_waits_after_looking(clock, slot, thread, looks=1, since=seen)
    speaker = threading.Thread(target=speaking_step, daemon=True)
    speaker.start()  # ...until it asks again, less urgent than the newcomer
    assert newcomer_got.wait(DEADLINE_S), "the newcomer waited for the reservation"
    finish(thread)
    clock.advance(RESERVE_AFTER_LISTEN_S)  # the newcomer's own reservation lapses
    finish(speaker)
    assert order == ["newcomer", "speaking"]


def test_after_a_transcription_the_slot_waits_longer_for_its_conversations_first_token() -> None:
    clock = FakeClock()
    slot = WatchedSlot(clock)
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []

    with slot.hold(urgent, Stage.LISTEN):
        order.append("urgent heard")
        thread = queue_step(slot, later, Stage.LISTEN, lambda: order.append("later"))
    building_s = RESERVE_AFTER_LISTEN_S / 2  # building its prompt: longer than RESERVE_S
    assert building_s > RESERVE_S
    clock.advance(building_s)
    still_waits_after_looking(clock, slot, thread)
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent writes")
    clock.advance(RESERVE_S)
    finish(thread)
    assert order == ["urgent heard", "urgent writes", "later"]


def test_the_slot_counts_its_waiting_steps_and_the_seconds_it_was_held() -> None:
    clock = FakeClock()
    slot = WatchedSlot(clock)
    pace = Pace(arrived_s=0.0)  # one conversation: no reservation to wait out between its steps
    assert (slot.waiting_count, slot.busy_s) == (0, 0.0)
    with slot.hold(pace, Stage.TEXT):
        clock.advance(2.0)
        assert slot.busy_s == 2.0  # the step in progress counts as it goes
        thread = queue_step(slot, pace, Stage.TEXT, lambda: clock.advance(0.5))
        assert slot.waiting_count == 1
        clock.advance(1.0)
    finish(thread)
    assert (slot.waiting_count, slot.busy_s) == (0, 3.5)
    clock.advance(10.0)  # a free slot's time is not busy time
    assert slot.busy_s == 3.5


def test_the_slot_is_calm_while_nothing_near_its_deadline_holds_waits_or_just_let_go() -> None:
    clock = FakeClock(10.0)
    slot = WatchedSlot(clock)
    horizon_s, quiet_s = 0.5, 0.25
    assert slot.calm(horizon_s, quiet_s)  # no step yet
    ahead = Pace(arrived_s=0.0)  # an answer heard until 15.0: due at 15.0 less the margin
    ahead.first_audio_s, ahead.audio_s = 5.0, 10.0
    due_s = 15.0 - SPEECH_MARGIN_S
    answering = Pace(arrived_s=9.9)  # before its first sound: due since it came
    batch_line = Pace(arrived_s=9.0, background=True)
    with slot.hold(ahead, Stage.SPEECH):
        assert slot.calm(horizon_s, quiet_s)
        assert not slot.calm(due_s - clock.now_s + 0.01, quiet_s)  # a step that long delays it
        waiter = queue_step(slot, answering, Stage.LISTEN, lambda: None)
        assert not slot.calm(horizon_s, quiet_s)  # a conversation waits for its first sound
    finish(waiter)
    assert not slot.calm(horizon_s, quiet_s)  # it let go just now: it may be between steps
    clock.advance(quiet_s)
    assert slot.calm(horizon_s, quiet_s)
    with slot.hold(batch_line, Stage.TEXT):
        assert slot.calm(horizon_s, quiet_s)
    assert slot.calm(horizon_s, quiet_s)  # and just after it let go
    text = Pace(arrived_s=10.0, speaking=False)  # a written answer, read at 20 tokens a second
    with slot.hold(text, Stage.TEXT):
        assert not slot.calm(horizon_s, quiet_s)
        text.wrote(round(TEXT_TOKENS_PER_S))  # a second of text ahead of its reader
        assert slot.calm(horizon_s, quiet_s)


def test_the_cascade_is_idle_while_its_slot_is_calm_for_a_recognition_pass() -> None:
    asked: list[tuple[float, float]] = []

    class Slot:
        def calm(self, horizon_s: float, quiet_s: float) -> bool:
            asked.append((horizon_s, quiet_s))
            return True

    assert CascadeEngine.idle(SimpleNamespace(slot=Slot()))  # type: ignore[arg-type]
    assert asked == [(SPARE_STEP_S, IDLE_AFTER_S)]
