"""Free loopback ports for the servers the tests start, chosen below the kernel's ephemeral
range.

A client polling a port that nothing listens on yet may be given that very port as its own
local port when it lies in the ephemeral range, and then connects to itself (a TCP
simultaneous open): it reads back its own request (``BadStatusLine: GET / HTTP/1.1``).
Ports below the range are never handed out to clients, so that cannot happen."""

from __future__ import annotations

import random
import socket
from pathlib import Path

#: above Ray's default worker ports (10002-19999)
_LOWEST = 20000
#: where a Ray Client proxy starts its per-driver servers (23000 upward): a port a test takes
#: there makes a ``ray://`` driver fail to start
_RAY_CLIENT = range(23000, 24000)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def is_free(port: int, ip: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def free_ports(count: int = 1, *, twin: int = 0, ip: str = "127.0.0.1") -> list[int]:
    """``count`` consecutive free ports (and, with ``twin``, each port + ``twin`` free too),
    all below the ephemeral range."""
    top = _ephemeral_start() - count - twin
    if top <= _LOWEST:
        raise RuntimeError(f"no room for {count} ports below the ephemeral range")
    for _ in range(500):
        base = random.randint(_LOWEST, top)
        ports = list(range(base, base + count))
        wanted = ports + ([p + twin for p in ports] if twin else [])
        if any(p in _RAY_CLIENT for p in wanted):
            continue
        if all(is_free(p, ip) for p in wanted):
            return ports
    raise RuntimeError("no free loopback ports below the ephemeral range")


def free_port(ip: str = "127.0.0.1") -> int:
    """One free port below the ephemeral range."""
    return free_ports(1, ip=ip)[0]
