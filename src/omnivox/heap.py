"""glibc's allocator, kept from hoarding what the models free.

The models allocate and free large buffers (recognition activations, synthesis
tensors, numpy audio) on several threads. Two measures keep the resident set
near what is live:

- ``tune_malloc``, once at the start of ``omnivox serve``: at most two arenas
  (``M_ARENA_MAX``; left alone when ``MALLOC_ARENA_MAX`` is set). With glibc's
  default of up to 8 arenas per core the memory one thread frees is not reused
  by another, and the resident set grows with every concurrent conversation.
- ``release_free_memory`` after each synthesized unit has left, in the
  synthesis thread, and ``release_free_memory_soon`` after each recognition
  pass, in a thread of its own, so that the conversation that waits for the
  pass goes on at once (never on the event loop: a release after a large free
  takes 2-8 ms): ``malloc_trim(0)`` hands the
  free pages inside the heaps back to the system, so the fragments that
  recognition and synthesis leave do not add up, conversation after
  conversation, into the high-water mark. On the cascade benchmark the peak
  fell from 1.30-1.33 GB to 1.12-1.16 GB; with the release after each unit only
  (not after recognition) it was 1.22 GB. Each release takes a millisecond
  or a few (glibc holds each arena's lock meanwhile, so a thread allocating
  from that arena, the event loop's included, waits that long at most), and
  the next step faults its pages in again (a recognition pass after a
  release: ~13 % more page faults, a few percent more time). A
  lower fixed ``M_MMAP_THRESHOLD`` would return large blocks too, but the
  recogniser then maps and unmaps its per-step buffers every step: at 1 MiB a
  pass took 2.6 x the page faults and 1.3 x the CPU time.

Serving every block from the heaps once the models are loaded (``M_MMAP_MAX`` 0,
no trimming on free) was measured and dropped. Each Whisper pass maps and
unmaps a few dozen buffers of 12-104 MB and faults ~120,000 pages; from the
heaps, a pass alone took 0.90 s instead of 1.10 s (0.80 s with no release
after it). But served, a step's freed buffers stayed resident into the next
step until released, the cascade benchmark's peak rose to 1203 MiB (from
1121-1129), and first audio did not move: the pages released after each step
fault in again either way.
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
