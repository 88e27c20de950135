"""The usage ledger in Redis, for replicas that share no disk.

Each finished row is one ``XADD`` to ``omnivox:ledger``, acknowledged by Redis
before the answer completes; the stream id is Redis's millisecond clock, so
``since`` is an ``XRANGE`` start. A row in progress lives in the hash
``omnivox:ledger:open`` under its request id instead (``HSET`` at admission,
again for each ``update``), and ``record`` moves it to the stream in one
``MULTI`` (``XADD`` and ``HDEL``), so at every moment a request is in exactly
one of the two and summaries count it once. An ``update`` that comes after
its row left the hash (a late one, or after ``recover``) writes nothing: a
script checks the field still exists. ``recover`` moves the hash's rows to
the stream as ``failed``, each in one script (``HDEL``, then ``XADD`` only when
the field was still there), so it never races a live server's ``record`` into
two rows; when it closes a row whose server was still running, that server's
``record`` appends the outcome later, and reading the stream keeps the last row
of each request id (request ids are unique).

Summaries read the stream in pages and add up in Python, which suits ledgers
up to millions of rows; export older rows to SQL beyond that. Durability is
Redis's own: the row survives any omnivox process, and survives Redis itself
only with ``appendonly yes`` (``appendfsync always`` for the same guarantee as
SQLite's ``synchronous=FULL``).
"""

from __future__ import annotations

import json
from typing import Any

from omnivox.access.ledger import WRITE_FAILED_MESSAGE, LedgerEntry, UsageSummary
from omnivox.errors import ServerError

STREAM_KEY = "omnivox:ledger"
OPEN_SUFFIX = ":open"
PAGE_ROWS = 1000
NONE_MARK = ""  # streams hold strings only; an empty completion_id means None

# KEYS[1] the open hash; ARGV[1] the request id, ARGV[2] the row as JSON.
UPDATE_IF_OPEN = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
    redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
    return 1
end
return 0
"""
# KEYS[1] the stream, KEYS[2] the open hash; ARGV[1] the request id, then field, value, ...
CLOSE_IF_OPEN = """
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then
    redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
    return 1
end
return 0
"""


class RedisLedger:
    def __init__(self, url: str, stream_key: str = STREAM_KEY) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._stream_key = stream_key
        self._open_key = stream_key + OPEN_SUFFIX
        self._update_if_open = self._redis.register_script(UPDATE_IF_OPEN)
        self._close_if_open = self._redis.register_script(CLOSE_IF_OPEN)

    async def begin(self, entry: LedgerEntry) -> None:
        await self._write(self._redis.hset(self._open_key, entry.request_id, _json(entry)))

    async def update(self, entry: LedgerEntry) -> None:
        await self._write(
            self._update_if_open(keys=[self._open_key], args=[entry.request_id, _json(entry)])
        )

    async def record(self, entry: LedgerEntry) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self._stream_key, _fields(entry))
            pipe.hdel(self._open_key, entry.request_id)
            await self._write(pipe.execute())

    async def recover(self) -> int:
        import redis.exceptions

        closed = 0
        try:
            for request_id, row in (await self._redis.hgetall(self._open_key)).items():
                entry = _entry(json.loads(row))
                failed = {**_fields(entry), "status": "failed", "cost_usd": 0.0}
                args = [request_id, *(item for pair in failed.items() for item in pair)]
                closed += await self._close_if_open(
                    keys=[self._stream_key, self._open_key], args=args
                )
        except redis.exceptions.RedisError as exc:
            raise ServerError(f"The usage ledger in Redis could not be read ({exc}).") from exc
        return closed

    async def _write(self, command: Any) -> None:
        import redis.exceptions

        try:
            await command
        except redis.exceptions.RedisError as exc:
            raise ServerError(WRITE_FAILED_MESSAGE) from exc

    async def entries(
        self, key_id: str | None = None, since_s: float | None = None
    ) -> list[LedgerEntry]:
        """The rows in the order they were written, a request's last row standing for it;
        then the rows in progress, oldest first."""

        def wanted(entry: LedgerEntry) -> bool:
            return (key_id is None or entry.key_id == key_id) and (
                since_s is None or entry.created_s >= since_s
            )

        start = "-" if since_s is None else str(int(since_s * 1000))
        ended: dict[str, LedgerEntry] = {}
        while True:
            page = await self._redis.xrange(self._stream_key, min=start, max="+", count=PAGE_ROWS)
            for _, record in page:
                entry = _entry(record)
                if wanted(entry):
                    ended.pop(entry.request_id, None)  # closed by ``recover``, then its outcome
                    ended[entry.request_id] = entry
            if len(page) < PAGE_ROWS:
                break
            start = "(" + page[-1][0]
        rows = (await self._redis.hgetall(self._open_key)).values()
        running = [_entry(json.loads(row)) for row in rows]
        running = [e for e in running if wanted(e) and e.request_id not in ended]
        return [*ended.values(), *sorted(running, key=lambda e: e.created_s)]

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


def _fields(entry: LedgerEntry) -> dict[str, Any]:
    return {k: NONE_MARK if v is None else v for k, v in entry.to_record().items()}


def _json(entry: LedgerEntry) -> str:
    return json.dumps(entry.to_record())


def _entry(record: dict[str, Any]) -> LedgerEntry:
    if record.get("completion_id") == NONE_MARK:
        record["completion_id"] = None
    return LedgerEntry.from_record(record)
