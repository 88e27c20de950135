"""A request in flight whose usage is metered: what access hears while it runs and ends.

Every served request that makes something (a chat completion, a reading, a
transcription) is a ``MeteredRun``: its ``usage`` grows as the work is made;
``checkpoints`` hear it at most once per ``CHECKPOINT_INTERVAL_S`` while the
work goes on, and ``finalizers`` run exactly once when it ends, whatever the
outcome, with the usage final (for a cancelled or failed run: what was made until
then). On success they run before the last byte of the answer leaves, so a
ledger row is final before the client has the whole answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from omnivox.serving.usage import UsageCounter

CHECKPOINT_INTERVAL_S = 1.0  # how often a run in progress reports its usage so far

Outcome = Literal["completed", "failed", "cancelled"]
Finalizer = Callable[["MeteredRun", Outcome], Awaitable[None]]
Checkpoint = Callable[["MeteredRun"], Awaitable[None]]


@dataclass(slots=True)
class MeteredRun:
    """``completion_id`` names the answer in the ledger (None where the answer has no id)."""

    completion_id: str | None
    usage: UsageCounter
    _: KW_ONLY
    finalizers: list[Finalizer] = field(default_factory=list)
    checkpoints: list[Checkpoint] = field(default_factory=list)
    next_checkpoint_s: float = field(
        default_factory=lambda: time.monotonic() + CHECKPOINT_INTERVAL_S
    )

    async def finish(self, outcome: Outcome) -> None:
        self.checkpoints = []
        finalizers, self.finalizers = self.finalizers, []
        for finalizer in finalizers:
            await finalizer(self, outcome)

    async def checkpoint(self) -> None:
        """Tell ``checkpoints`` the usage so far, once ``CHECKPOINT_INTERVAL_S`` has passed."""
        now_s = time.monotonic()
        if now_s < self.next_checkpoint_s:
            return
        self.next_checkpoint_s = now_s + CHECKPOINT_INTERVAL_S
        for checkpoint in self.checkpoints:
            await checkpoint(self)


class RunEnd:
    """How a run ends: ``completed()`` once its work is whole (the finalizers run then,
    before the answer's last bytes); otherwise the block that made it decides."""

    def __init__(self, run: MeteredRun) -> None:
        self.run = run
        self.outcome: Outcome = "failed"

    async def completed(self) -> None:
        self.outcome = "completed"
        # Shielded: a client leaving now must not cut the row's write in half (the
        # finalizers are taken before they run, so nothing would run them again).
        await asyncio.shield(self.run.finish("completed"))


@contextlib.asynccontextmanager
async def ending(run: MeteredRun) -> AsyncIterator[RunEnd]:
    """Around the work of ``run``: whatever ends the block (done, a failure, the client
    leaving), the finalizers run exactly once with the outcome."""
    end = RunEnd(run)
    try:
        yield end
    except (asyncio.CancelledError, GeneratorExit):
        end.outcome = "cancelled"
        raise
    finally:
        if run.finalizers:  # not yet run: the work failed or was cancelled
            await asyncio.shield(run.finish(end.outcome))
