"""Learner addresses: one `tcp://HOST:PORT` names both links (experience on PORT, policies on PORT+1)."""

from __future__ import annotations

import ipaddress
import logging
import re

log = logging.getLogger(__name__)

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


def is_loopback(bind: str) -> bool:
    """Whether a learner bound at `bind` is reachable from this machine only."""
    host, _ = _parse(bind, "transport.bind")
    host = host.strip("[]")
    if host in ("localhost", "lo"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from elsewhere
        return False


def check_bind_security(bind: str, curve: bool, insecure: bool) -> None:
    """Refuse a learner reachable from other machines without CURVE unless `insecure`; warn if it starts so.

    Without CURVE anyone who reaches the port can push experience into the replay and pull the policy.
    """
    if curve or is_loopback(bind):
        return
    if not insecure:
        raise ValueError(
            f"transport.bind {bind} accepts connections from other machines, but transport.curve.enabled is false: "
            "anyone who reaches the port could push experience into the replay and pull the policy. Turn on CURVE "
            "(`daydream keys --dir keys --actors ROBOT_ID ...`, then --set transport.curve.enabled=true on the learner "
            "and the actors), bind to loopback (tcp://127.0.0.1:PORT), or on a trusted network accept the risk with "
            "--set transport.insecure=true")
    log.warning("INSECURE: the learner listens on %s without CURVE (transport.insecure is true): anyone who reaches "
                "the port can push experience and pull policies. Use CURVE (`daydream keys`) off a trusted network.",
                bind)
