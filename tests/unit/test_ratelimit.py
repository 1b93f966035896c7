"""Client addresses and attempt limits (R20, A1)."""

from __future__ import annotations

import time

import pytest

from codexrelay.errors import AppError
from codexrelay.relay.http.ratelimit import AttemptLimiter, client_address, parse_networks
from tests.helpers import wait_until


def _scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 1234), "headers": headers}


def test_client_address_is_peer_without_trusted_proxies():
    """X-Forwarded-For is ignored unless the peer is a configured proxy."""
    assert client_address(_scope("198.51.100.7", "203.0.113.1"), ()) == "198.51.100.7"


def test_client_address_ignores_forwarded_from_untrusted_peer():
    """A client that is not a trusted proxy cannot name another address."""
    trusted = parse_networks(["127.0.0.1"])
    assert client_address(_scope("198.51.100.7", "203.0.113.1"), trusted) == "198.51.100.7"


def test_client_address_uses_forwarded_behind_trusted_proxy():
    """Behind a trusted proxy the client is the proxy's forwarded address."""
    trusted = parse_networks(["127.0.0.1"])
    assert client_address(_scope("127.0.0.1", "203.0.113.1"), trusted) == "203.0.113.1"


def test_client_address_takes_rightmost_untrusted_hop():
    """A client-forged left-most entry is skipped: the right-most untrusted hop wins."""
    trusted = parse_networks(["127.0.0.1", "10.0.0.0/8"])
    scope = _scope("127.0.0.1", "1.2.3.4, 203.0.113.9, 10.1.2.3")
    assert client_address(scope, trusted) == "203.0.113.9"


def test_client_address_falls_back_to_peer_when_all_hops_trusted():
    """If every hop is a proxy, the peer address is used."""
    trusted = parse_networks(["127.0.0.0/8"])
    assert client_address(_scope("127.0.0.1", "127.0.0.2"), trusted) == "127.0.0.1"


def test_limiter_per_address_and_global():
    """R20: each address has its own budget and all addresses share a global one."""
    limiter = AttemptLimiter("t", per_address=2, global_factor=2)
    limiter.hit("a")
    limiter.hit("a")
    with pytest.raises(AppError) as exc:
        limiter.hit("a")
    assert exc.value.status == 429
    assert int(exc.value.headers["Retry-After"]) >= 1
    limiter.hit("b")
    limiter.hit("c")  # four allowed attempts in all: the global budget is now spent
    with pytest.raises(AppError):
        limiter.hit("d")


def test_limiter_resets_after_window():
    """R20: once the window has passed, attempts are allowed again."""
    limiter = AttemptLimiter("t", per_address=1, global_factor=10, window_sec=1)
    limiter.hit("a")
    with pytest.raises(AppError):
        limiter.hit("a")
    started = time.monotonic()

    def allowed() -> bool:
        try:
            limiter.hit("a")
        except AppError:
            return False
        return True

    wait_until(allowed, timeout=3, what="the window to pass")
    assert time.monotonic() - started >= 0.5
