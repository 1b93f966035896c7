"""Attempt limits for unauthenticated endpoints (R20, A1), built on the ``limits`` library.

Every attempt counts, successful or not, both per client address and relay-wide, so a
botnet spreading guesses over many addresses still meets the global ceiling.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterable, Sequence

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import Scope

from codexrelay.errors import AppError, ErrorCode

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AttemptLimiter:
    """Per-address and global moving-window limits for one kind of attempt."""

    def __init__(
        self, name: str, *, per_address: int, global_factor: int, window_sec: int = 60
    ) -> None:
        self.name = name
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_address = RateLimitItemPerSecond(per_address, window_sec)
        self._global = RateLimitItemPerSecond(per_address * global_factor, window_sec)

    def hit(self, address: str) -> None:
        """Count one attempt; raise 429 ``rate-limited`` with ``Retry-After`` when over."""
        for item, key in ((self._per_address, address), (self._global, "*")):
            if not self._limiter.hit(item, self.name, key):
                stats = self._limiter.get_window_stats(item, self.name, key)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                raise AppError(
                    ErrorCode.RATE_LIMITED,
                    "Too many attempts; wait a minute and try again.",
                    headers={"Retry-After": str(retry)},
                )


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """The configured trusted proxies as networks (config validation already checked them)."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _is_trusted(address: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(scope: Scope, trusted: Sequence[IPNetwork]) -> str:
    """The client's address: the socket peer, unless that peer is a trusted proxy.

    Behind trusted proxies, walk ``X-Forwarded-For`` from the right and take the first hop
    that is not itself a trusted proxy; a client cannot forge its way past that hop.
    """
    client = scope.get("client")
    peer = client[0] if client else "unknown"
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded: list[str] = []
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
    for hop in reversed(forwarded):
        if hop and not _is_trusted(hop, trusted):
            return hop
    return peer
