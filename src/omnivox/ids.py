"""Identifiers in the shapes OpenAI uses.

``chatcmpl-`` + 29 alphanumerics, ``audio_`` + 32 hex, ``call_`` + 24
alphanumerics, ``req_`` + 32 hex, ``fp_`` + 10 hex; the Realtime API's ids are a
prefix (``event_``, ``sess_``, ``item_``, ``resp_``...) + 21 alphanumerics; the
Responses API's a prefix (``resp_``, ``msg_``, ``fc_``) + 48 hex. Random: the bytes
come from the operating system's generator (``os.urandom``, as ``secrets``), read
``POOL_BYTES`` at a time, since one read per id costs more than the rest of a request's
id-making (a forked child starts with an empty pool, never its parent's bytes).
"""

from __future__ import annotations

import hashlib
import os
import string
import threading

_ALPHANUMERIC = string.ascii_letters + string.digits
POOL_BYTES = 4096


class _RandomPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""

    def take(self, n_bytes: int) -> bytes:
        with self._lock:
            if len(self._pool) < n_bytes:
                self._pool = os.urandom(max(POOL_BYTES, n_bytes))
            taken, self._pool = self._pool[:n_bytes], self._pool[n_bytes:]
        return taken

    def clear(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""


_POOL = _RandomPool()
os.register_at_fork(after_in_child=_POOL.clear)


def token_bytes(n_bytes: int) -> bytes:
    return _POOL.take(n_bytes)


def token_hex(n_bytes: int) -> str:
    return _POOL.take(n_bytes).hex()


def _alphanumeric(n_chars: int) -> str:
    # Bytes below 248 (= 4 x 62) map to the 62 characters without bias.
    chars: list[str] = []
    while len(chars) < n_chars:
        chars += [_ALPHANUMERIC[b % 62] for b in token_bytes(n_chars * 2) if b < 248]
    return "".join(chars[:n_chars])


def completion_id() -> str:
    return "chatcmpl-" + _alphanumeric(29)


def audio_id() -> str:
    return "audio_" + token_hex(16)


def tool_call_id() -> str:
    return "call_" + _alphanumeric(24)


def new_id(prefix: str, n_chars: int = 21) -> str:
    """A Realtime id: ``prefix`` + ``n_chars`` alphanumerics."""
    return prefix + _alphanumeric(n_chars)


def hex_id(prefix: str) -> str:
    """A Responses API id: ``prefix`` + 48 hex."""
    return prefix + token_hex(24)


def request_id() -> str:
    return "req_" + token_hex(16)


def system_fingerprint(*parts: str) -> str:
    """Stable for one configuration: the same models give the same fingerprint."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return "fp_" + digest[:10]
