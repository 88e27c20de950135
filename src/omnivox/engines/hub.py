"""Why the Hugging Face Hub could not provide a model, in words for an error message.

Each engine finds and downloads its own models; they share how a failure is told.
This module imports nothing of ``huggingface_hub``: callers say whether it is offline.
"""

from __future__ import annotations

MAX_REASON_CHARS = 200


def hub_failure_reason(exc: BaseException, offline: bool) -> str:
    """That the Hub is switched off, or the exception's type and its first line."""
    if offline:
        return "HF_HUB_OFFLINE is set"
    first_line = (str(exc).strip().splitlines() or [""])[0][:MAX_REASON_CHARS]
    return f"{type(exc).__name__}: {first_line}"
