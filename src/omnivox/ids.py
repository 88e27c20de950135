"""Identifiers in the shapes OpenAI uses.

``chatcmpl-`` + 29 alphanumerics, ``audio_`` + 32 hex, ``call_`` + 24
alphanumerics, ``req_`` + 32 hex, ``fp_`` + 10 hex; the Realtime API's ids are a
prefix (``event_``, ``sess_``, ``item_``, ``resp_``...) + 21 alphanumerics; the
Responses API's a prefix (``resp_``, ``msg_``, ``fc_``) + 48 hex. Random, from
``secrets``.
"""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHANUMERIC = string.ascii_letters + string.digits


def _alphanumeric(n_chars: int) -> str:
    # Bytes below 248 (= 4 x 62) map to the 62 characters without bias.
    chars: list[str] = []
    while len(chars) < n_chars:
        chars += [_ALPHANUMERIC[b % 62] for b in secrets.token_bytes(n_chars * 2) if b < 248]
    return "".join(chars[:n_chars])


def completion_id() -> str:
    return "chatcmpl-" + _alphanumeric(29)


def audio_id() -> str:
    return "audio_" + secrets.token_hex(16)


def tool_call_id() -> str:
    return "call_" + _alphanumeric(24)


def new_id(prefix: str, n_chars: int = 21) -> str:
    """A Realtime id: ``prefix`` + ``n_chars`` alphanumerics."""
    return prefix + _alphanumeric(n_chars)


def hex_id(prefix: str) -> str:
    """A Responses API id: ``prefix`` + 48 hex."""
    return prefix + secrets.token_hex(24)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def system_fingerprint(*parts: str) -> str:
    """Stable for one configuration: the same models give the same fingerprint."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()
    return "fp_" + digest[:10]
