"""The client's address behind reverse proxies, for the login's per-address rate limit.

A proxy in front of the server (nginx, a load balancer) makes every request come from its own
address; it names the real client in ``X-Forwarded-For``, which anyone can also send. So the
header is believed only from the proxies the settings trust (``PHLOEM_TRUSTED_PROXIES``:
addresses or networks), and only as far back as trusted proxies reach: the chain is read from
its right end (the hop the trusted peer added) leftwards, past each trusted proxy, and the
first address that is not one is the client. What a client wrote to the left of that is never
read, so a forged header cannot pick the address a failed login counts against. With no
trusted proxy (the default) the client is the peer.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

from starlette.requests import Request

FORWARDED_FOR = "x-forwarded-for"


def _canonical(address: str) -> str:
    """One spelling per address (``::FFFF:10.0.0.1`` is ``10.0.0.1``); other text as given."""
    try:
        ip = ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` is believed."""

    def __init__(self, proxies: Iterable[str] = ()) -> None:
        self.networks: tuple[IPv4Network | IPv6Network, ...] = tuple(
            ip_network(p.strip(), strict=False) for p in proxies if p.strip()
        )

    def trusts(self, address: str) -> bool:
        try:
            ip = ip_address(_canonical(address))
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def client(self, peer: str, forwarded_for: Iterable[str]) -> str:
        """The client's address, given the peer's and the ``X-Forwarded-For`` values sent."""
        if not self.networks or not self.trusts(peer):
            return _canonical(peer)
        hops = [h.strip() for value in forwarded_for for h in value.split(",")]
        address = peer
        for hop in reversed([h for h in hops if h]):
            address = hop
            if not self.trusts(hop):
                break
        return _canonical(address)


def client_address(request: Request) -> str:
    """The address of the client of ``request``, as the app's trusted proxies tell it."""
    peer = request.client.host if request.client else "unknown"
    proxies: TrustedProxies | None = getattr(request.app.state, "trusted_proxies", None)
    if proxies is None:
        return peer
    return proxies.client(peer, request.headers.getlist(FORWARDED_FOR))


__all__ = ["TrustedProxies", "client_address"]
