"""Building the access collaborator from ``Settings``: the backend registries and the bind rule.

Limiter backends: ``memory`` (this process only) and ``redis`` (shared by every
replica; chosen whenever ``redis_url`` is set). Ledger backends: ``sqlite``
(the default, next to the keys) and ``redis``. Keys always live in the SQLite
access file, which the ``omnivox keys`` commands manage.

The bind rule: with no API keys, a server bound to loopback (127.0.0.0/8,
::1, localhost) serves without keys and says so at start; bound to any other
address it refuses to start (``require_keys_error``), as does a server with
``require_keys`` set and no keys. Keys created while a server runs count at
once, and from then on every request needs one: a revoked key still counts,
so revoking the last key leaves the server closed rather than open.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from omnivox.access.gate import KeyedAccess
from omnivox.access.keys import SqliteKeyStore
from omnivox.access.ledger import Ledger, SqliteLedger
from omnivox.access.limiter import Limiter, MemoryLimiter
from omnivox.access.tiers import load_access_config
from omnivox.settings import Settings


def _memory_limiter(settings: Settings) -> Limiter:
    return MemoryLimiter()


def _redis_limiter(settings: Settings) -> Limiter:
    from omnivox.access.redis_limiter import RedisLimiter

    return RedisLimiter(_redis_url(settings))


def _sqlite_ledger(settings: Settings) -> Ledger:
    return SqliteLedger(settings.access_db_path, synchronous=settings.ledger_sync)


def _redis_ledger(settings: Settings) -> Ledger:
    from omnivox.access.redis_ledger import RedisLedger

    return RedisLedger(_redis_url(settings))


LIMITERS: dict[str, Callable[[Settings], Limiter]] = {
    "memory": _memory_limiter,
    "redis": _redis_limiter,
}
LEDGERS: dict[str, Callable[[Settings], Ledger]] = {
    "sqlite": _sqlite_ledger,
    "redis": _redis_ledger,
}


def _redis_url(settings: Settings) -> str:
    if settings.redis_url is None:
        raise ValueError("the Redis ledger needs --redis-url")
    return settings.redis_url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve anywhere


def open_without_keys(settings: Settings) -> bool:
    return is_loopback(settings.host) and not settings.require_keys


def require_keys_error(settings: Settings, has_keys: bool) -> str | None:
    """Why the server must not start, or None."""
    if has_keys or open_without_keys(settings):
        return None
    create = "Create one with `omnivox keys create --name NAME` (same --data-dir)"
    if settings.require_keys:
        return (
            "no API keys exist and --require-keys is set, so every request would be "
            f"refused. {create}, or leave out --require-keys to serve loopback without keys."
        )
    return (
        f"no API keys exist and --host {settings.host} is not a loopback address, so every "
        f"request would be refused. {create}, or bind to 127.0.0.1."
    )


def build_ledger(settings: Settings) -> Ledger:
    return LEDGERS[settings.ledger](settings)


def build_access(settings: Settings) -> KeyedAccess:
    limiter_name = "redis" if settings.redis_url else "memory"
    return KeyedAccess(
        SqliteKeyStore(settings.access_db_path),
        LIMITERS[limiter_name](settings),
        build_ledger(settings),
        load_access_config(settings.limits_file),
        open_without_keys=open_without_keys(settings),
    )
