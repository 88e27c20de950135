"""A pytest plugin: while the tests run, nothing in their process reaches beyond this machine.

Loaded for the whole session by ``-p tests.support.no_network`` (pyproject's
``addopts``) and installed at ``pytest_configure``, before collection, so that
imports are guarded too. A socket may connect or send only to a loopback address
(127.0.0.0/8, ::1), to the unspecified one (which Linux routes to this host), to
``localhost``, or through a family other than IP (unix sockets); a name lookup
may ask only for ``localhost`` or an address literal. Anything else raises
``NetworkAccessRefused``, an ``OSError`` as on a machine without a network, so a
library's offline path runs as it would there, and the attempt is listed at the
end of the run. Subprocesses are not guarded: the servers the tests start listen
on loopback only, and their own clients (the SDK v1 test's) are told its address.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


class NetworkAccessRefused(OSError):
    """A test tried to reach another machine."""


class NameLookupRefused(NetworkAccessRefused, socket.gaierror):
    """A test tried to resolve a name other than ``localhost``."""


_refused: list[str] = []
_originals: dict[str, Any] = {}


def is_local_host(host: str | bytes | None) -> bool:
    """Whether connecting to ``host`` (a name or an address literal) stays on this machine."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host == "" or host.lower() in LOCAL_NAMES:
        return True
    try:
        address = ipaddress.ip_address(host.partition("%")[0])  # an IPv6 scope id follows %
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def _refuse(what: str, error: type[NetworkAccessRefused] = NetworkAccessRefused) -> None:
    _refused.append(what)
    raise error(
        errno.ENETUNREACH,
        f"{what}: tests may not reach the network (refused by tests/support/no_network.py)",
    )


def _check_address(sock: socket.socket, address: Any, call: str) -> None:
    if sock.family in _IP_FAMILIES and not is_local_host(address[0]):
        _refuse(f"{call} to {address[0]!r} port {address[1]}")


def _guarded_connect(original: Callable[..., Any], call: str) -> Callable[..., Any]:
    def connect(self: socket.socket, address: Any) -> Any:
        _check_address(self, address, call)
        return original(self, address)

    return connect


def _guarded_sendto(original: Callable[..., Any]) -> Callable[..., Any]:
    def sendto(self: socket.socket, data: Any, *flags_and_address: Any) -> Any:
        _check_address(self, flags_and_address[-1], "sendto")
        return original(self, data, *flags_and_address)

    return sendto


def _guarded_getaddrinfo(original: Callable[..., Any]) -> Callable[..., Any]:
    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_local_host(host) and not _is_literal(host):
            _refuse(f"name lookup of {host!r}", NameLookupRefused)
        return original(host, *args, **kwargs)

    return getaddrinfo


def _is_literal(host: str | bytes) -> bool:
    """An address literal: resolving it asks no server (binding to 0.0.0.0 resolves one)."""
    text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
    try:
        ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return False
    return True


def install() -> None:
    guards = {
        "connect": _guarded_connect(socket.socket.connect, "connect"),
        "connect_ex": _guarded_connect(socket.socket.connect_ex, "connect_ex"),
        "sendto": _guarded_sendto(socket.socket.sendto),
    }
    for name, guard in guards.items():
        _originals[name] = vars(socket.socket).get(name)  # None: inherited from _socket
        setattr(socket.socket, name, guard)
    _originals["getaddrinfo"] = socket.getaddrinfo
    socket.getaddrinfo = _guarded_getaddrinfo(socket.getaddrinfo)


def uninstall() -> None:
    for name in ("connect", "connect_ex", "sendto"):
        original = _originals.pop(name)
        if original is None:
            delattr(socket.socket, name)
        else:
            setattr(socket.socket, name, original)
    socket.getaddrinfo = _originals.pop("getaddrinfo")


def pytest_configure(config: pytest.Config) -> None:
    install()
    config.add_cleanup(uninstall)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _refused:
        terminalreporter.section("network access refused")
        for what in sorted(set(_refused)):
            terminalreporter.line(f"{_refused.count(what)} x {what}")
