"""glibc's allocator, set for a server whose models allocate and free large buffers.

Two settings, made once at the start of ``omnivox serve`` (each left alone when
its glibc environment variable is set, so an operator can still choose):

- At most two arenas (``M_ARENA_MAX``). Recognition, chat and synthesis threads
  each allocate large numpy and tensor buffers; with glibc's default of up to 8
  arenas per core the memory one thread frees is not reused by another, and the
  resident set grows with every concurrent conversation.
- Blocks of 1 MiB and more from their own mappings (``M_MMAP_THRESHOLD``),
  returned to the system when freed. glibc's default threshold starts at
  128 KiB but rises to 32 MiB as soon as a large block is freed, after which
  synthesis and recognition buffers of several MiB come from the heap and stay
  resident as fragments between conversations: on the default cascade, four
  conversations at once left a high-water mark of 1.40-1.51 GB with the default,
  0.99 GB with 1 MiB (1.06 GB with 4 MiB, 1.34 GB with 16 MiB). Below 1 MiB the
  recogniser's per-step buffers would be mapped and unmapped every step:
  256 KiB made the same four conversations take 1.7 x as long; 1 MiB none slower.
"""

from __future__ import annotations

import ctypes
import os
import sys

MALLOC_ARENAS = 2
MMAP_THRESHOLD_BYTES = 1 << 20
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers
M_ARENA_MAX = -8


def tune_malloc() -> bool:
    """Apply both settings; False where glibc is not there to be told."""
    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        if "MALLOC_ARENA_MAX" not in os.environ:
            libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)
        if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):
        return False
    return True
