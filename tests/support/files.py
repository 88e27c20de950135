"""Files' permission bits in tests: a umask that hides nothing, and a file's mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """A umask that lets every file be world-readable unless its creator says otherwise."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)
