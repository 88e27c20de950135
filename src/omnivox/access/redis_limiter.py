"""The Redis limiter: the same draining meters, shared by every replica.

One hash per key and model class holds the three levels and the time they were
read; one Lua script drains, decides and charges in a single atomic step, so N
server processes enforce one limit. The clock is Redis's own ``TIME``, so
replicas on hosts with different clocks still agree. The script returns the
levels it read (refused) or wrote (admitted) and Python builds the same
``Decision`` as ``MemoryLimiter`` from them (``limiter.decide``). Hashes expire
once fully drained.

``redis`` is imported when a limiter is built; a Redis failure becomes a 500
``ServerError`` (the SDK retries those), never a silent pass.
"""

from __future__ import annotations

from typing import Any

from omnivox.access.limiter import Decision, charges, decide, limit_values
from omnivox.access.tiers import Limits
from omnivox.errors import ServerError

KEY_PREFIX = "omnivox:rl:"
UNREACHABLE_MESSAGE = "The server could not reach its rate-limit store. Please try again."

# KEYS[1]: the hash. ARGV: mode ("acquire" | "adjust"), then per meter (rpm, rpd, tpm)
# its limit (0 = none) and charge, then the least token charge ("" = the charge is
# fixed; else the token charge may shrink to what the TPM meter has left, down to this).
# Returns {admitted, used_rpm, used_rpd, used_tpm, tokens} as strings (Redis would
# truncate Lua numbers to integers): levels before the charge, and the tokens charged.
METER_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local windows = {60, 86400, 60}
local state = redis.call('HMGET', KEYS[1], 't', 'u1', 'u2', 'u3')
local elapsed = math.max(0, now - (tonumber(state[1]) or now))
local mode = ARGV[1]
local used, limits, costs = {}, {}, {}
local ok = 1
local ttl_s = 1
for i = 1, 3 do
  limits[i] = tonumber(ARGV[2 * i])
  costs[i] = tonumber(ARGV[2 * i + 1])
  local u = 0
  if limits[i] > 0 then
    u = math.max(0, (tonumber(state[i + 1]) or 0) - elapsed * limits[i] / windows[i])
    if mode == 'acquire' and costs[i] > 0 and u + costs[i] > limits[i] + 1e-9 then
      ok = 0
    end
  end
  used[i] = u
end
local least = tonumber(ARGV[8])
if mode == 'acquire' and least and limits[3] > 0 and costs[3] > 0 then
  local left = math.floor(limits[3] - used[3] + 1e-9)
  if costs[3] > left then
    costs[3] = math.max(least, left)
    ok = 1
    for i = 1, 3 do
      if limits[i] > 0 and costs[i] > 0 and used[i] + costs[i] > limits[i] + 1e-9 then
        ok = 0
      end
    end
  end
end
local out = {ok}
for i = 1, 3 do
  out[i + 1] = tostring(used[i])
  if ok == 1 and limits[i] > 0 then
    used[i] = math.max(0, used[i] + costs[i])
  end
  if limits[i] > 0 then
    ttl_s = math.max(ttl_s, used[i] * windows[i] / limits[i])
  end
end
redis.call('HSET', KEYS[1], 't', tostring(now), 'u1', tostring(used[1]),
           'u2', tostring(used[2]), 'u3', tostring(used[3]))
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl_s * 1000) + 1000)
out[5] = tostring(costs[3])
return out
"""


class RedisLimiter:
    def __init__(self, url: str) -> None:
        import redis.asyncio

        self._redis: Any = redis.asyncio.Redis.from_url(url)
        self._script = self._redis.register_script(METER_SCRIPT)

    async def _run(
        self,
        bucket: str,
        mode: str,
        limits: Limits,
        costs: tuple[int, ...],
        min_tokens: int | None = None,
    ) -> Any:
        import redis.exceptions

        args: list[Any] = [mode]
        for limit, cost in zip(limit_values(limits), costs, strict=True):
            args += [limit or 0, cost]
        args.append("" if min_tokens is None else min_tokens)
        try:
            return await self._script(keys=[KEY_PREFIX + bucket], args=args)
        except redis.exceptions.RedisError as exc:
            raise ServerError(UNREACHABLE_MESSAGE) from exc

    async def acquire(
        self,
        bucket: str,
        limits: Limits,
        n_requests: int,
        n_tokens: int,
        *,
        min_tokens: int | None = None,
    ) -> Decision:
        costs = charges(n_requests, n_tokens)
        reply = await self._run(bucket, "acquire", limits, costs, min_tokens)
        used_before = [float(v) for v in reply[1:4]]
        tokens = int(float(reply[4]))
        return decide(limits, used_before, n_requests, tokens, admitted=bool(int(reply[0])))

    async def adjust_tokens(self, bucket: str, limits: Limits, delta_tokens: int) -> None:
        if limits.tpm is not None:
            await self._run(bucket, "adjust", limits, (0, 0, delta_tokens))

    async def ping(self) -> None:
        import redis.exceptions

        try:
            await self._redis.ping()
        except redis.exceptions.RedisError as exc:
            raise ServerError(UNREACHABLE_MESSAGE) from exc

    async def close(self) -> None:
        await self._redis.aclose()
