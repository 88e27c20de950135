"""The allocator of ``omnivox serve``: freed buffers leave the resident set once released."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, sys
    import time
    from omnivox.heap import release_free_memory, release_free_memory_soon, tune_malloc
    assert tune_malloc()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    def rss_kb():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    block = 2 << 20
    libc.free(libc.malloc(block))  # glibc's default then keeps blocks this big in the heap
    before = rss_kb()
    blocks = [libc.malloc(block) for _ in range(64)]
    for b in blocks:
        ctypes.memset(b, 1, block)
    for b in blocks[:-1]:  # the last one stays, above the others, as a live buffer would
        libc.free(b)
    if sys.argv[1] == "released":
        release_free_memory()
    elif sys.argv[1] == "released soon":
        release_free_memory_soon()  # returns at once; a background thread releases
        waited_s = 0.0
        while rss_kb() - before > 10_000 and waited_s < 10:
            time.sleep(0.01)
            waited_s += 0.01
    print(rss_kb() - before)
    """
)


def retained_kb(mode: str) -> int:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"
    }
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator")
def test_released_heap_pages_leave_the_resident_set() -> None:
    # 64 buffers of 2 MiB written and freed but one: the heap keeps ~126 MiB resident
    # until its free pages are released; then only the live buffer stays.
    assert retained_kb("kept") > 100_000
    assert retained_kb("released") < 10_000
    assert retained_kb("released soon") < 10_000
