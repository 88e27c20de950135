"""Whom a server without keys answers: requests to loopback names, from no foreign page.

A server without keys trusts whoever can reach its loopback port. A web page the
operator opens can reach it too:

- by DNS rebinding: its own name made to resolve to 127.0.0.1, so that the browser
  lets the page read the answers. Such a request names the page's host in ``Host``,
  never a loopback name, so other names are refused (as Jupyter and the Docker daemon
  do); ``allowed_hosts`` adds names.
- by a plain cross-site request, which a browser sends without asking first when it
  is a simple POST. Browsers name the page in ``Origin``: a request from an origin that
  is neither on loopback, nor on an allowed host, nor among ``cors_origins`` is refused
  before anything else is done for it (no ledger row, no work). Programs other than
  browsers send no ``Origin``.

Callers with a key are not checked: the key is what they are trusted for.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from omnivox.errors import HostNotAllowedError

ANY_ORIGIN = "*"


def host_name(host_header: str) -> str | None:
    """``Host`` without its port or trailing dot, in lower case; None when malformed."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8000
        address, _, rest = host[1:].partition("]")
        return address if rest == "" or (rest[0] == ":" and rest[1:].isdigit()) else None
    name, colon, port = host.partition(":")
    if colon and not port.isdigit():
        return None
    return name.rstrip(".")


def is_loopback_name(name: str | None) -> bool:
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always loopback
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class KeylessTrust:
    def __init__(self, allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = ()) -> None:
        self._hosts = frozenset(host_name(name) for name in allowed_hosts) - {None}
        self._origins = frozenset(origin.rstrip("/").lower() for origin in cors_origins)

    def host_allowed(self, host_header: str | None) -> bool:
        if host_header is None:  # HTTP/1.0 without Host: nothing a browser sends
            return True
        name = host_name(host_header)
        return is_loopback_name(name) or name in self._hosts

    def origin_allowed(self, origin: str | None) -> bool:
        if origin is None:  # not a browser
            return True
        if ANY_ORIGIN in self._origins or origin.rstrip("/").lower() in self._origins:
            return True
        try:
            name = urlsplit(origin).hostname
        except ValueError:
            return False
        return is_loopback_name(name) or name in self._hosts  # a page served from here

    def check(self, host_header: str | None, origin: str | None) -> None:
        if not self.host_allowed(host_header):
            raise HostNotAllowedError(
                f"Host '{host_header}' is not allowed: this server runs without API keys and "
                "answers only requests addressed to a loopback name (localhost, 127.0.0.1, "
                "[::1]). The operator can add names with --allowed-hosts, or create API keys."
            )
        if not self.origin_allowed(origin):
            raise HostNotAllowedError(
                f"Origin '{origin}' is not allowed: this server runs without API keys and "
                "answers web pages only from loopback origins or those given to "
                "--cors-origins.",
                code="origin_not_allowed",
            )
