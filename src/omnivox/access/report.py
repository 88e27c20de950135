"""Plain-text tables for ``omnivox keys list`` and ``omnivox usage``.

Formatting only: the numbers come from the key store and ``UsageSummary``,
the same summary the ``/v1/usage`` endpoint returns as JSON. Each request is
one row, counted once: one still running (or cut by a crash, until a server
next starts on the ledger) counts as ``in_progress`` with its tokens so far and
no cost yet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from omnivox.access.keys import ApiKey
from omnivox.access.ledger import IN_PROGRESS, UsageSummary, UsageTotals

USAGE_COLUMNS = (
    "model",
    "requests",
    "prompt text",
    "prompt audio",
    "compl. text",
    "compl. audio",
    "cost USD",
)
KEY_COLUMNS = ("id", "name", "tier", "overrides", "key", "created", "status")


def utc(timestamp_s: float) -> str:
    return dt.datetime.fromtimestamp(timestamp_s, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    """Columns from ``numeric_from`` on are right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            str(cell).ljust(w) if i < numeric_from else str(cell).rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def _usage_row(name: str, t: UsageTotals) -> list[str]:
    return [
        name,
        str(t.requests),
        str(t.prompt_text_tokens),
        str(t.prompt_audio_tokens),
        str(t.completion_text_tokens),
        str(t.completion_audio_tokens),
        f"{t.cost_usd:.6f}",
    ]


def usage_report(summary: UsageSummary, who: str) -> str:
    since = f" since {utc(summary.since_s)}" if summary.since_s is not None else ""
    rows = [_usage_row(m, t) for m, t in sorted(summary.models.items())]
    rows.append(_usage_row("total", summary.total))
    statuses = ", ".join(f"{s} {n}" for s, n in sorted(summary.total.statuses.items()))
    running = summary.total.statuses.get(IN_PROGRESS, 0)
    note = f"\n{running} in progress: tokens so far, billed once they end" if running else ""
    return (
        f"usage of {who}{since}\n{table(USAGE_COLUMNS, rows)}\n"
        f"requests by status: {statuses or 'none'}{note}"
    )


def keys_report(keys: Sequence[ApiKey]) -> str:
    rows = []
    for k in keys:
        o = k.overrides
        overrides = " ".join(
            f"{n}={v}" for n, v in (("rpm", o.rpm), ("rpd", o.rpd), ("tpm", o.tpm)) if v
        )
        status = "active" if k.active else f"revoked {utc(k.revoked_s or 0)}"
        rows.append([k.key_id, k.name, k.tier, overrides or "-", k.hint, utc(k.created_s), status])
    return table(KEY_COLUMNS, rows, numeric_from=len(KEY_COLUMNS)) if rows else "no keys"
