"""The cascade's compute slot: model steps on the engine's cores, earliest deadline first."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from omnivox.engines.cascade import scheduler
from omnivox.engines.cascade.scheduler import (
    ALL_CORES,
    ANY_CORES,
    OUTPUT_BYTES_PER_S,
    RESERVE_S,
    SPEECH_MARGIN_S,
    TEXT_TOKENS_PER_S,
    ComputeSlot,
    Pace,
    Stage,
    Width,
)

ONE_CORE = Width(1, 1)


def wait_for_waiters(slot: ComputeSlot, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(slot._waiting) < n:
        assert time.monotonic() < deadline, "waiters never queued"
        time.sleep(0.005)


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
    slot = ComputeSlot()
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
            thread = threading.Thread(target=step, args=(name, Pace(arrived_s), stage))
            thread.start()
            threads.append(thread)
            wait_for_waiters(slot, len(threads))
    for thread in threads:
        thread.join(timeout=5)
    assert granted == ["early speech", "early text", "middle", "late"]


def test_a_cancelled_waiter_leaves_without_the_slot_and_blocks_no_one() -> None:
    slot = ComputeSlot()
    cancel = threading.Event()
    outcome: list[bool] = []

    def waiter() -> None:
        with slot.hold(Pace(arrived_s=1.0), Stage.TEXT, cancel) as ok:
            outcome.append(ok)

    with slot.hold(Pace(arrived_s=0.0), Stage.TEXT):
        thread = threading.Thread(target=waiter)
        thread.start()
        wait_for_waiters(slot, 1)
        cancel.set()
        thread.join(timeout=5)
    assert outcome == [False]
    with slot.hold(Pace(), Stage.TEXT) as ok:  # free again
        assert ok


def test_steps_hold_the_slot_during_each_next_only() -> None:
    slot = ComputeSlot()
    held_during_next: list[bool] = []

    def items():
        for i in range(3):
            held_during_next.append(slot.busy_cores)
            yield i

    seen = []
    for item in slot.steps(items(), Pace(), Stage.TEXT):
        seen.append((item, slot.busy_cores))
    assert seen == [(0, 0), (1, 0), (2, 0)]
    assert held_during_next == [1, 1, 1]


def test_two_threads_never_hold_the_slot_at_once() -> None:
    slot = ComputeSlot()
    inside = 0
    most = 0
    lock = threading.Lock()

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            with slot.hold(Pace(), Stage.TEXT):
                with lock:
                    inside += 1
                    most = max(most, inside)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert most == 1


def test_debug_logging_names_slow_waits_and_every_speech_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    slot = ComputeSlot()
    caplog.set_level(logging.DEBUG, logger="omnivox.scheduler")
    with slot.hold(Pace(), Stage.TEXT):
        pass  # a text step that did not wait: not worth a line
    with slot.hold(Pace(), Stage.SPEECH):
        time.sleep(0.02)
    first = threading.Event()

    def hold_a_while() -> None:
        with slot.hold(Pace(), Stage.SPEECH):
            first.set()
            time.sleep(0.15)

    holder = threading.Thread(target=hold_a_while)
    holder.start()
    first.wait(5)
    with slot.hold(Pace(), Stage.TEXT):
        pass
    holder.join()
    lines = [r.getMessage() for r in caplog.records if r.name == "omnivox.scheduler"]
    assert len(lines) == 3  # the text step that did not wait is not among them
    assert lines[0].startswith("speech step: waited 0.0")
    assert sum(line.startswith("speech step") for line in lines) == 2
    assert any(line.startswith("text step: waited 0.1") for line in lines)


def test_a_conversation_between_two_steps_keeps_the_slot_from_a_later_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "RESERVE_S", 0.5)  # longer than any thread switch here
    slot = ComputeSlot()
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []
    later_asking = threading.Event()

    def later_step() -> None:
        later_asking.set()
        with slot.hold(later, Stage.LISTEN):
            order.append("later")

    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 1")
    thread = threading.Thread(target=later_step)
    thread.start()  # asks while the urgent conversation is between two steps
    later_asking.wait(5)
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 2")
    thread.join()
    assert order == ["urgent 1", "urgent 2", "later"]


def test_a_reservation_lapses_when_its_conversation_does_not_come_back() -> None:
    slot = ComputeSlot()
    with slot.hold(Pace(arrived_s=1.0), Stage.TEXT):
        pass
    asked = time.monotonic()
    with slot.hold(Pace(arrived_s=2.0), Stage.LISTEN):
        waited = time.monotonic() - asked
    assert RESERVE_S * 0.5 <= waited < RESERVE_S + 0.5
    asked = time.monotonic()
    with slot.hold(Pace(arrived_s=0.5), Stage.LISTEN):  # more urgent: no wait
        assert time.monotonic() - asked < RESERVE_S


class Holder:
    """A thread holding cores of ``slot`` until told to let go."""

    def __init__(self, slot: ComputeSlot, pace: Pace, stage: Stage, width=ALL_CORES) -> None:
        self.cores = -1
        self.holding = threading.Event()
        self.let_go = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(slot, pace, stage, width))
        self.thread.start()

    def _run(self, slot: ComputeSlot, pace: Pace, stage: Stage, width) -> None:
        with slot.hold(pace, stage, width=width) as cores:
            self.cores = cores
            self.holding.set()
            self.let_go.wait(10)

    def release(self) -> None:
        self.let_go.set()
        self.thread.join(timeout=5)


def test_one_core_steps_run_side_by_side_and_a_whole_machine_step_waits_for_both() -> None:
    slot = ComputeSlot(2)
    first = Holder(slot, Pace(arrived_s=1.0), Stage.SPEECH, ONE_CORE)
    second = Holder(slot, Pace(arrived_s=2.0), Stage.SPEECH, ONE_CORE)
    assert first.holding.wait(5) and second.holding.wait(5)  # both at once
    assert (first.cores, second.cores, slot.busy_cores) == (1, 1, 2)
    whole = Holder(slot, Pace(arrived_s=0.0), Stage.LISTEN, ALL_CORES)
    wait_for_waiters(slot, 1)
    first.release()
    assert not whole.holding.wait(0.2)  # one core is not enough
    second.release()
    assert whole.holding.wait(5)
    assert whole.cores == 2
    whole.release()


def test_a_flexible_step_takes_every_free_core_alone_and_one_when_another_waits() -> None:
    slot = ComputeSlot(2)
    with slot.hold(Pace(speaking=False), Stage.TEXT, width=ANY_CORES) as cores:
        assert cores == 2
    speech = Holder(slot, Pace(arrived_s=0.0), Stage.SPEECH, ONE_CORE)
    assert speech.holding.wait(5)
    with slot.hold(Pace(speaking=False), Stage.TEXT, width=ANY_CORES) as cores:
        assert cores == 1  # the other core is busy
    speech.release()

    blocker = Holder(slot, Pace(arrived_s=0.0), Stage.LISTEN, ALL_CORES)
    assert blocker.holding.wait(5)
    texts = [
        Holder(slot, Pace(arrived_s=1.0 + i, speaking=False), Stage.TEXT, ANY_CORES)
        for i in range(2)
    ]
    wait_for_waiters(slot, 2)
    blocker.release()
    for text in texts:
        assert text.holding.wait(5)
    assert [t.cores for t in texts] == [1, 1]  # the first left a core for the second
    for text in texts:
        text.release()


def test_a_conversation_before_its_first_sound_shares_no_core() -> None:
    slot = ComputeSlot(2)
    unheard = Pace(arrived_s=0.0)
    assert unheard.unheard
    blocker = Holder(slot, Pace(arrived_s=-1.0), Stage.LISTEN, ALL_CORES)
    assert blocker.holding.wait(5)
    first = Holder(slot, unheard, Stage.TEXT, ANY_CORES)
    wait_for_waiters(slot, 1)
    other = Holder(slot, Pace(arrived_s=1.0, speaking=False), Stage.TEXT, ANY_CORES)
    wait_for_waiters(slot, 2)
    blocker.release()
    assert first.holding.wait(5) and first.cores == 2  # though another step waits
    assert not other.holding.wait(0.1)
    first.release()
    assert other.holding.wait(5)
    other.release()
    unheard.spoke(OUTPUT_BYTES_PER_S)
    assert not unheard.unheard


def test_the_most_urgent_waiter_is_not_overtaken_by_a_later_step_that_fits() -> None:
    slot = ComputeSlot(2)
    running = Holder(slot, Pace(arrived_s=0.0), Stage.SPEECH, ONE_CORE)
    assert running.holding.wait(5)
    urgent = Holder(slot, Pace(arrived_s=1.0), Stage.LISTEN, ALL_CORES)
    wait_for_waiters(slot, 1)
    later = Holder(slot, Pace(arrived_s=2.0), Stage.TEXT, ONE_CORE)
    wait_for_waiters(slot, 2)
    assert not later.holding.wait(0.2)  # a core is free, but the urgent step waits for two
    running.release()
    assert urgent.holding.wait(5) and not later.holding.is_set()
    urgent.release()
    assert later.holding.wait(5)
    later.release()


def test_a_flexible_step_leaves_no_core_that_the_next_waiter_could_not_use() -> None:
    slot = ComputeSlot(2)
    blocker = Holder(slot, Pace(arrived_s=0.0), Stage.LISTEN, ALL_CORES)
    assert blocker.holding.wait(5)
    text = Holder(slot, Pace(arrived_s=1.0, speaking=False), Stage.TEXT, ANY_CORES)
    wait_for_waiters(slot, 1)
    whole = Holder(slot, Pace(arrived_s=2.0), Stage.SPEECH, ALL_CORES)
    wait_for_waiters(slot, 2)
    blocker.release()
    assert text.holding.wait(5) and text.cores == 2  # one core would have idled
    text.release()
    assert whole.holding.wait(5)
    whole.release()


def test_a_reservation_keeps_one_core_of_several(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler, "RESERVE_S", 0.5)
    slot = ComputeSlot(2)
    owner = Pace(arrived_s=1.0, speaking=False)
    with slot.hold(owner, Stage.TEXT, width=ANY_CORES):
        pass
    asked = time.monotonic()
    with slot.hold(Pace(arrived_s=2.0), Stage.SPEECH, width=ONE_CORE) as cores:
        assert cores == 1 and time.monotonic() - asked < 0.25  # the unreserved core
    whole = Holder(slot, Pace(arrived_s=2.0), Stage.LISTEN, ALL_CORES)
    wait_for_waiters(slot, 1)
    with slot.hold(owner, Stage.TEXT, width=ANY_CORES) as cores:  # the owner comes back
        assert cores >= 1
        assert not whole.holding.is_set()
    assert whole.holding.wait(5)  # after the owner's step, and the lapse
    assert whole.cores == 2
    whole.release()

    newcomer = Pace(arrived_s=1.0)  # before its first sound: every core is kept for it
    with slot.hold(newcomer, Stage.TEXT, width=ANY_CORES):
        pass
    asked = time.monotonic()
    with slot.hold(Pace(arrived_s=2.0), Stage.SPEECH, width=ONE_CORE):
        assert time.monotonic() - asked >= 0.25


def test_many_threads_never_hold_more_cores_than_the_slot_has() -> None:
    slot = ComputeSlot(3)
    lock = threading.Lock()
    in_use = 0
    most = 0

    def work(width: Width, stage: Stage) -> None:
        nonlocal in_use, most
        for _ in range(150):
            with slot.hold(Pace(speaking=False), stage, width=width) as cores:
                with lock:
                    in_use += cores
                    most = max(most, in_use)
                time.sleep(0.0002)
                with lock:
                    in_use -= cores

    plan = [
        (ALL_CORES, Stage.LISTEN),
        (ONE_CORE, Stage.SPEECH),
        (ONE_CORE, Stage.SPEECH),
        (ANY_CORES, Stage.TEXT),
        (ANY_CORES, Stage.TEXT),
    ]
    threads = [threading.Thread(target=work, args=args) for args in plan]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert most == 3
    assert slot.busy_cores == 0 and slot.peak_steps >= 2
