"""ModelThread: every call and step on one thread, results and errors handed back."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from omnivox.engines.worker import ModelThread


@pytest.fixture
def model_thread() -> Iterator[ModelThread]:
    thread = ModelThread("test-model")
    yield thread
    thread.close()


def test_calls_from_many_threads_run_on_one(model_thread: ModelThread) -> None:
    with ThreadPoolExecutor(4) as callers:
        ran_on = list(callers.map(lambda _: model_thread.run(threading.current_thread), range(8)))
    assert len(set(ran_on)) == 1
    assert ran_on[0].name.startswith("test-model")


def test_an_error_is_raised_in_the_caller(model_thread: ModelThread) -> None:
    def fail() -> None:
        raise ValueError("bad prompt")

    with pytest.raises(ValueError, match="bad prompt"):
        model_thread.run(fail)
    assert model_thread.run(lambda: 2) == 2  # and the thread goes on


def test_steps_run_and_close_on_the_thread(model_thread: ModelThread) -> None:
    seen: list[tuple[str, threading.Thread]] = []

    def items() -> Iterator[int]:
        try:
            for n in range(5):
                seen.append(("step", threading.current_thread()))
                yield n
        finally:
            seen.append(("closed", threading.current_thread()))

    steps = model_thread.steps(items())
    assert [next(steps), next(steps)] == [0, 1]
    steps.close()
    assert [kind for kind, _ in seen] == ["step", "step", "closed"]
    assert {thread.name for _, thread in seen} == {seen[0][1].name}
    assert seen[0][1] is not threading.current_thread()


def test_steps_end_with_their_items(model_thread: ModelThread) -> None:
    assert list(model_thread.steps(iter([1, 2, 3]))) == [1, 2, 3]
