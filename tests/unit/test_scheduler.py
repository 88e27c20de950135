"""The cascade's compute slot: one step at a time, earliest deadline first."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import pytest

from omnivox.engines.cascade import scheduler
from omnivox.engines.cascade.scheduler import (
    OUTPUT_BYTES_PER_S,
    RESERVE_AFTER_LISTEN_S,
    RESERVE_S,
    SPEECH_MARGIN_S,
    TEXT_TOKENS_PER_S,
    ComputeSlot,
    Pace,
    Stage,
)


def wait_for_waiters(slot: ComputeSlot, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(slot._waiting) < n:
        assert time.monotonic() < deadline, "waiters never queued"
        time.sleep(0.005)


def queue_step(
    slot: ComputeSlot, pace: Pace, stage: Stage, on_grant: Callable[[], object]
) -> threading.Thread:
    """A step of ``pace`` on a thread of its own, returned once it waits in the queue."""
    queued = len(slot._waiting)

    def step() -> None:
        with slot.hold(pace, stage):
            on_grant()

    thread = threading.Thread(target=step)
    thread.start()
    wait_for_waiters(slot, queued + 1)
    return thread


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
            held_during_next.append(slot._busy)
            yield i

    seen = []
    for item in slot.steps(items(), Pace(), Stage.TEXT):
        seen.append((item, slot._busy))
    assert seen == [(0, False), (1, False), (2, False)]
    assert held_during_next == [True, True, True]


def test_two_threads_never_hold_the_slot_at_once() -> None:
    slot = ComputeSlot()
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


def test_a_conversation_between_two_steps_keeps_the_slot_from_a_later_one_already_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "RESERVE_S", 0.5)  # longer than any thread switch here
    slot = ComputeSlot()
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []

    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 1")
        # the later one waits before the urgent one releases
        thread = queue_step(slot, later, Stage.LISTEN, lambda: order.append("later"))
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent 2")
    thread.join(timeout=5)
    assert order == ["urgent 1", "urgent 2", "later"]


def test_a_waiting_conversation_gets_the_slot_once_the_reservation_lapses() -> None:
    slot = ComputeSlot()
    got_s: list[float] = []

    with slot.hold(Pace(arrived_s=1.0), Stage.TEXT):
        later = Pace(arrived_s=2.0)
        thread = queue_step(slot, later, Stage.LISTEN, lambda: got_s.append(time.monotonic()))
        released_s = time.monotonic()
    thread.join(timeout=5)  # the urgent conversation never comes back
    assert len(got_s) == 1
    assert RESERVE_S * 0.5 <= got_s[0] - released_s < RESERVE_S + 0.5


def test_a_reservation_ends_when_its_conversation_comes_back_less_urgent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(scheduler, "RESERVE_S", 1.0)  # far longer than a thread switch
    slot = ComputeSlot()
    speaking = Pace(arrived_s=0.0)
    speaking.first_audio_s = time.monotonic()
    order: list[str] = []
    newcomer_got_s: list[float] = []

    def newcomer_granted() -> None:
        newcomer_got_s.append(time.monotonic())
        order.append("newcomer")

    with slot.hold(speaking, Stage.SPEECH):
        newcomer = Pace(arrived_s=time.monotonic())
        thread = queue_step(slot, newcomer, Stage.LISTEN, newcomer_granted)
        speaking.spoke(10 * OUTPUT_BYTES_PER_S)  # 10 s ahead of its listener now
    asked_s = time.monotonic()
    with slot.hold(speaking, Stage.SPEECH):
        order.append("speaking")
    thread.join(timeout=5)
    assert order == ["newcomer", "speaking"]
    assert newcomer_got_s[0] - asked_s < 0.5  # not the 1 s reservation


def test_after_a_transcription_the_slot_waits_longer_for_its_conversations_first_token() -> None:
    slot = ComputeSlot()
    urgent, later = Pace(arrived_s=1.0), Pace(arrived_s=2.0)
    order: list[str] = []

    with slot.hold(urgent, Stage.LISTEN):
        order.append("urgent heard")
        thread = queue_step(slot, later, Stage.LISTEN, lambda: order.append("later"))
    time.sleep(RESERVE_AFTER_LISTEN_S / 3)  # building its prompt: longer than RESERVE_S
    with slot.hold(urgent, Stage.TEXT):
        order.append("urgent writes")
    thread.join(timeout=5)
    assert RESERVE_AFTER_LISTEN_S / 3 > RESERVE_S
    assert order == ["urgent heard", "urgent writes", "later"]
