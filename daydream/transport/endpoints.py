"""Learner addresses: one `tcp://HOST:PORT` names both links (experience on PORT, policies on PORT+1)."""

from __future__ import annotations

import re

_TCP = re.compile(r"tcp://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d{1,5})")


def _parse(address: str, what: str) -> tuple[str, int]:
    m = _TCP.fullmatch(address.strip())
    if not m or not 0 < int(m.group("port")) < 65535:
        raise ValueError(f"{what} {address!r} must look like tcp://HOST:PORT (port 1-65534; policies use PORT+1), "
                         "e.g. tcp://192.168.1.10:5555")
    return m.group("host"), int(m.group("port"))


def policy_endpoint(experience_endpoint: str, what: str = "learner address") -> str:
    """The policy socket's address for a learner's experience address (the next port)."""
    host, port = _parse(experience_endpoint, what)
    return f"tcp://{host}:{port + 1}"


def check_endpoint(address: str, what: str) -> str:
    _parse(address, what)
    return address.strip()


def local_connect_address(bind: str) -> str:
    """Where a process on this machine reaches a learner bound at `bind` (a wildcard host becomes loopback)."""
    host, port = _parse(bind, "transport.bind")
    if host in ("*", "0.0.0.0", "[::]"):
        host = "127.0.0.1"
    return f"tcp://{host}:{port}"
