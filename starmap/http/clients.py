"""Who the client is, for rate limits: an address no client can choose for itself.

Without trusted proxies the peer address is the client. Behind proxies
(``API_TRUSTED_PROXIES``), ``X-Forwarded-For`` is read from the right, starting at the
peer: every hop that is a trusted proxy was added by one of ours, and the first that is
not is the client. Anything to its left was written by the client (or by someone it
went through) and is never believed.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Final

__all__ = ("client_address",)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN: Final = "unknown"


@functools.lru_cache(maxsize=4096)
def _address(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """A hop's address (``1.2.3.4``, ``1.2.3.4:567``, ``::1``, ``[::1]:567``); None if it is none.

    Kept for the few thousand most recent hops: every like asks for its peer's, and parsing an
    address was ~3 % of a like's CPU (the answers are immutable, the cache bounded).
    """
    hop = hop.strip()
    if hop.startswith("["):
        hop = hop[1 : hop.find("]")] if "]" in hop else hop
    elif hop.count(":") == 1:
        hop = hop.partition(":")[0]
    try:
        return ipaddress.ip_address(hop)
    except ValueError:
        return None


@functools.lru_cache(maxsize=4096)
def _name(peer: str) -> str:
    """The peer's address as the rate limiter keys it (written once per peer, not per request)."""
    here = _address(peer)
    return str(here) if here is not None else peer


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None, proxies: Sequence[Network]
) -> bool:
    return address is not None and any(address in network for network in proxies)


def client_address(peer: str | None, forwarded_for: Iterable[str], proxies: Sequence[Network]) -> str:
    """The client: the right-most address that is not a trusted proxy (the peer first)."""
    if not peer:
        return UNKNOWN
    if not proxies:  # the peer is the client (every like asks: no hop list, no proxy test)
        return _name(peer)
    here = _address(peer)
    if not _trusted(here, proxies):
        return _name(peer)
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    for hop in reversed(hops):
        address = _address(hop)
        if not _trusted(address, proxies):
            # A hop that is no address at all was written by a proxy we do not know: it is
            # the best name for the client there is, and no client chose it past our proxies.
            return str(address) if address is not None else hop[:64]
    return str(_address(hops[0])) if hops else str(here)  # only proxies: the first one's peer
