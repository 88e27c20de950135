"""The usage ledger in a Redis stream, for replicas that share no disk.

Each row is one ``XADD`` to ``omnivox:ledger``, acknowledged by Redis before
the answer completes; the stream id is Redis's millisecond clock, so ``since``
is an ``XRANGE`` start. Summaries read the stream in pages and add up in
Python, which suits ledgers up to millions of rows; export older rows to SQL
beyond that. Durability is Redis's own: the row survives any omnivox process,
and survives Redis itself only with ``appendonly yes`` (``appendfsync
always`` for the same guarantee as SQLite's ``synchronous=FULL``).
"""

from __future__ import annotations

from typing import Any

from omnivox.access.ledger import LedgerEntry, UsageSummary
from omnivox.errors import ServerError

STREAM_KEY = "omnivox:ledger"
PAGE_ROWS = 1000
NONE_MARK = ""  # streams hold strings only; an empty completion_id means None


class RedisLedger:
    def __init__(self, url: str, stream_key: str = STREAM_KEY) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._stream_key = stream_key

    async def record(self, entry: LedgerEntry) -> None:
        import redis.exceptions

        record = {k: NONE_MARK if v is None else v for k, v in entry.to_record().items()}
        try:
            await self._redis.xadd(self._stream_key, record)
        except redis.exceptions.RedisError as exc:
            raise ServerError("The server could not write its usage ledger.") from exc

    async def entries(
        self, key_id: str | None = None, since_s: float | None = None
    ) -> list[LedgerEntry]:
        start = "-" if since_s is None else str(int(since_s * 1000))
        found: list[LedgerEntry] = []
        while True:
            page = await self._redis.xrange(self._stream_key, min=start, max="+", count=PAGE_ROWS)
            for _, record in page:
                if record.get("completion_id") == NONE_MARK:
                    record["completion_id"] = None
                entry = LedgerEntry.from_record(record)
                if (key_id is None or entry.key_id == key_id) and (
                    since_s is None or entry.created_s >= since_s
                ):
                    found.append(entry)
            if len(page) < PAGE_ROWS:
                return found
            start = "(" + page[-1][0]

    async def summarize(self, key_id: str | None, since_s: float | None) -> UsageSummary:
        import redis.exceptions

        summary = UsageSummary(key_id, since_s)
        try:
            entries = await self.entries(key_id, since_s)
        except redis.exceptions.RedisError as exc:
            raise ServerError(f"The usage ledger in Redis could not be read ({exc}).") from exc
        for e in entries:
            tokens = (
                e.prompt_text_tokens,
                e.prompt_audio_tokens,
                e.completion_text_tokens,
                e.completion_audio_tokens,
            )
            summary.add(e.model, e.status, 1, tokens, e.cost_usd)
        return summary

    async def ping(self) -> None:
        import redis.exceptions

        try:
            await self._redis.ping()
        except redis.exceptions.RedisError as exc:
            raise ServerError("The server could not reach its usage ledger.") from exc

    async def close(self) -> None:
        await self._redis.aclose()
