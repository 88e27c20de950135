"""Which ``Host`` a caller without a key may name: loopback names, and those configured.

A server without keys trusts whoever can reach its loopback port. A web page the
operator opens can reach it too, by DNS rebinding: its own name made to resolve to
127.0.0.1, so that the browser lets the page read the answers. Such a request names the
page's host in ``Host``, never a loopback name, so refusing other names closes that door
(as Jupyter and the Docker daemon do). Callers with a key are not checked: the key is
what they are trusted for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from omnivox.errors import HostNotAllowedError


def host_name(host_header: str) -> str:
    """``Host`` without its port, brackets or trailing dot, in lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def is_loopback_name(name: str) -> bool:
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostCheck:
    def __init__(self, allowed: Iterable[str] = ()) -> None:
        self._allowed = frozenset(host_name(name) for name in allowed)

    def allows(self, host_header: str | None) -> bool:
        if host_header is None:  # HTTP/1.0 without Host: nothing a browser sends
            return True
        name = host_name(host_header)
        return is_loopback_name(name) or name in self._allowed

    def check(self, host_header: str | None) -> None:
        if not self.allows(host_header):
            raise HostNotAllowedError(
                f"Host '{host_header}' is not allowed: this server runs without API keys and "
                "answers only requests addressed to a loopback name (localhost, 127.0.0.1, "
                "[::1]). The operator can add names with --allowed-hosts, or create API keys."
            )
