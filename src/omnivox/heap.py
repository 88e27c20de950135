"""glibc's allocator, kept from hoarding what the models free.

The models allocate and free large buffers (recognition activations, synthesis
tensors, numpy audio) on several threads. Two measures keep the resident set
near what is live:

- ``tune_malloc``, once at the start of ``omnivox serve``: at most two arenas
  (``M_ARENA_MAX``; left alone when ``MALLOC_ARENA_MAX`` is set), so that the
  memory one thread frees is reused by another.
- ``release_free_memory`` after each synthesized unit, in the synthesis thread,
  and ``release_free_memory_soon`` after each recognition pass, in a thread of
  its own (never on the event loop): ``malloc_trim(0)`` hands the free pages
  inside the heaps back to the system, so that the fragments recognition and
  synthesis leave do not add up into the high-water mark.

Other settings (a fixed mmap threshold, no mmap at all) were measured and left
at glibc's defaults; docs/performance.md (Memory) has the figures.
"""

from __future__ import annotations

import ctypes
import functools
import os
import sys
import threading
from typing import Any

MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter number


@functools.cache
def _libc() -> Any:
    if sys.platform != "linux":
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  (glibc, not another C library)
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def tune_malloc() -> bool:
    """Cap the arenas; False where glibc is not there to be told."""
    libc = _libc()
    if libc is None:
        return False
    if "MALLOC_ARENA_MAX" not in os.environ:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    return True


_releasing = threading.Lock()


def release_free_memory() -> None:
    """Return the heaps' free pages to the system (nothing without glibc).

    One release walks every arena, so a thread that finds another one releasing
    skips its own rather than queue behind it for the same work.
    """
    libc = _libc()
    if libc is None or not _releasing.acquire(blocking=False):
        return
    try:
        libc.malloc_trim(0)
    finally:
        _releasing.release()


class _BackgroundRelease:
    """One daemon thread that releases when asked; asks that come meanwhile are one."""

    def __init__(self) -> None:
        self._wanted = threading.Event()
        self._start = threading.Lock()
        self._thread: threading.Thread | None = None

    def ask(self) -> None:
        with self._start:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="omnivox-heap", daemon=True)
                self._thread.start()
        self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            release_free_memory()


_background = _BackgroundRelease()


def release_free_memory_soon() -> None:
    """``release_free_memory`` in a background thread; returns at once."""
    _background.ask()
