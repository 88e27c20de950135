"""Measurements any layer reports without knowing who collects them.

``record_upstream(part, upstream, outcome, seconds)`` reports one call to a server
that does part of the model work (a chat model, speech recognition, synthesis on
another host), from any thread. The values name, from a small fixed set, the
``part`` of the work, the ``upstream`` (its configured name or host, never a whole
URL) and the ``outcome`` ("ok", "timeout", "error"...): each distinct triple
becomes a series of its own. Whoever collects subscribes a sink for as long as it
serves (the server does, for its lifespan, in ``server/metrics.py``); with none,
a report costs a function call and is dropped. Every subscribed sink hears every
report: one process normally serves one app.

Standard library only, like the other leaves: the Prometheus client is the server's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class UpstreamSink(Protocol):
    def upstream(self, part: str, upstream: str, outcome: str, seconds: float) -> None: ...


_sinks: tuple[UpstreamSink, ...] = ()
_sinks_lock = threading.Lock()


def record_upstream(part: str, upstream: str, outcome: str, seconds: float) -> None:
    """One call to an upstream server: which ``part`` of the work, to which ``upstream``,
    how it ended, and how long it took, in seconds."""
    for sink in _sinks:
        sink.upstream(part, upstream, outcome, seconds)


@contextmanager
def subscribed(sink: UpstreamSink) -> Iterator[None]:
    """``sink`` hears every report made while the block runs."""
    global _sinks
    with _sinks_lock:
        _sinks = (*_sinks, sink)
    try:
        yield
    finally:
        with _sinks_lock:
            _sinks = tuple(s for s in _sinks if s is not sink)
