"""Access around one metered request: a refusal before admission is recorded, and an
admitted request that ends before its run does gives its row an outcome.

Every route that makes something asks access the same way (see ``access.gate``):
``refused_before_admission`` wraps the parsing and checks that come before
``admit``; ``admitted`` admits and, for whatever ends the request before its run
(an error in OpenAI's shape, a cancellation, a bug), hands the admission its
``refuse``. A client that left (``ClientDisconnected``) is the run's own finalizer's
to record.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from omnivox.access.gate import AccessControl, Admission, Caller
from omnivox.errors import OmnivoxError
from omnivox.server.disconnect import ClientDisconnected
from omnivox.serving.runs import MeteredRun


@contextlib.asynccontextmanager
async def refused_before_admission(
    gate: AccessControl,
    caller: Caller,
    request_id: str,
    model: Callable[[], str],
    snapshot: Callable[[str], str],
) -> AsyncIterator[None]:
    """An ``OmnivoxError`` raised in the block is recorded as a refusal of ``model()``
    (the name the body gave, "" for none), with its headers."""
    try:
        yield
    except OmnivoxError as exc:
        name = model()
        await gate.refused(caller, name, snapshot(name), request_id, exc)
        raise


@contextlib.asynccontextmanager
async def admitted(
    gate: AccessControl,
    caller: Caller,
    model: str,
    snapshot: str,
    max_output: int | None,
    prompt_estimate: int,
    request_id: str,
    batch: bool = False,
) -> AsyncIterator[Admission]:
    admission = await gate.admit(  # records its own refusals
        caller, model, snapshot, max_output, prompt_estimate, request_id, batch
    )
    try:
        yield admission
    except OmnivoxError as exc:
        await admission.refuse(exc)
        raise
    except ClientDisconnected:
        raise  # the run's own finalizer recorded it as cancelled
    except BaseException as exc:  # a bug, or a cancellation before the run: close its row
        await asyncio.shield(admission.refuse(exc))
        raise


async def close_run(run: MeteredRun, stream: AsyncIterator[object]) -> None:
    """After a streamed response, however it ended: a stream cut while it waited to send
    is closed here, its work stopped at once rather than when the garbage collector
    finds it; one never started (the client left before the first byte) is recorded."""
    with contextlib.suppress(RuntimeError):  # still running elsewhere: it closes itself
        await stream.aclose()  # type: ignore[attr-defined]
    await run.finish("cancelled")  # a no-op once the run has finished
