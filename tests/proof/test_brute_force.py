"""Guessing codes and tokens against a real relay: the attempt limiter holds (R20, A1).

Concurrent attackers guess the bootstrap token, invite codes, recovery codes, passkey
logins and pairing codes, from many addresses: distinct X-Forwarded-For values behind a
trusted proxy, and distinct loopback source addresses (127.0.0.x) connecting directly.
Every attempt counts, successful or not, per address and relay-wide, so the total that
gets past the limiter within a window is capped by the global limit however many
addresses attack. X-Forwarded-For is the key only when the peer is a configured trusted
proxy, and then only its rightmost untrusted hop (a forged left part changes nothing).

The relay trusts 127.0.0.2 as its proxy: requests from that source address play the
proxy; requests from 127.0.0.1 and 127.0.0.3+ are direct clients.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers import RelayProcess, wait_until, write_relay_config

PER_ADDRESS = 3
FACTOR = 10
GLOBAL = PER_ADDRESS * FACTOR
PROXY = "127.0.0.2"
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _code(groups: int) -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(4)) for _ in range(groups))


def _login_guess(kind: str) -> tuple[str, dict]:
    """One guess at a login-limited endpoint (all share maxLoginAttemptsPerMinute)."""
    return {
        "bootstrap": ("/api/v1/auth/bootstrap", {"token": "crb_" + secrets.token_urlsafe(32)}),
        "invite": ("/api/v1/invites/accept", {"code": _code(3), "name": "Mallory"}),
        "recovery": ("/api/v1/auth/recovery/redeem", {"code": _code(3)}),
        "login-options": ("/api/v1/auth/passkeys/login/options", {}),
        "login-verify": (
            "/api/v1/auth/passkeys/login/verify",
            {
                "challengeId": secrets.token_urlsafe(16),
                "credential": {"id": "AAAA", "rawId": "AAAA", "type": "public-key"},
            },
        ),
    }[kind]


def _pair_guess() -> tuple[str, dict]:
    return "/api/v1/agent/pair", {"code": _code(2), "agentId": "bot", "label": "bot"}


LOGIN_KINDS = ("bootstrap", "invite", "recovery", "login-options", "login-verify")


@dataclass
class Relay:
    """The relay under attack and a client factory per source address."""

    process: RelayProcess
    clients: dict[str, httpx.Client]

    def client(self, source: str) -> httpx.Client:
        """An HTTP client whose connections come from ``source`` (a 127.0.0.x address)."""
        if source not in self.clients:
            self.clients[source] = httpx.Client(
                base_url=self.process.setup.base_url,
                headers={"Origin": self.process.setup.origin},
                transport=httpx.HTTPTransport(local_address=source),
                timeout=15,
            )
        return self.clients[source]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    """A real relay with tight limits that trusts 127.0.0.2 as its reverse proxy."""
    setup = write_relay_config(
        tmp_path / "relay",
        maxLoginAttemptsPerMinute=PER_ADDRESS,
        maxPairAttemptsPerMinute=PER_ADDRESS,
        globalAttemptsFactor=FACTOR,
        trustedProxies=[PROXY],
    )
    process = RelayProcess(setup, tmp_path / "relay.log").start()
    built = Relay(process, {})
    try:
        yield built
    finally:
        for client in built.clients.values():
            client.close()
        process.stop()


@dataclass
class Outcome:
    """Attempts made and how many got past the limiter (anything but 429)."""

    made: int = 0
    allowed: int = 0
    statuses: Counter[int] | None = None

    def add(self, status: int) -> None:
        self.made += 1
        self.allowed += status != 429
        if self.statuses is None:
            self.statuses = Counter()
        self.statuses[status] += 1


Attempt = tuple[str, str | None, Callable[[], tuple[str, dict]]]


def attack(relay: Relay, attempts: list[Attempt], workers: int = 16) -> Outcome:
    """Send every (source address, X-Forwarded-For, guess) concurrently."""

    def one(attempt: Attempt) -> int:
        source, forwarded, guess = attempt
        path, body = guess()
        headers = {"X-Forwarded-For": forwarded} if forwarded else {}
        res = relay.client(source).post(path, json=body, headers=headers)
        # A guess that worked would open a session or a pair request.
        assert "set-cookie" not in res.headers, f"a guess signed in: {path} {body}"
        assert res.status_code != 202, f"a guess claimed a pairing code: {body}"
        if res.status_code == 429:
            assert int(res.headers["Retry-After"]) >= 1
            assert res.json()["error"] == "rate-limited"
        return res.status_code

    for source, _, _ in attempts:
        relay.client(source)  # made here, not racing in the workers
    outcome = Outcome()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for status in pool.map(one, attempts):
            outcome.add(status)
    return outcome


def login_attempts(source: str, forwarded: list[str | None], per: int) -> list[Attempt]:
    """``per`` login guesses from each forwarded address, cycling through the endpoints."""
    made: list[Attempt] = []
    for i, address in enumerate(forwarded):
        for j in range(per):
            kind = LOGIN_KINDS[(i + j) % len(LOGIN_KINDS)]
            made.append((source, address, lambda k=kind: _login_guess(k)))
    return made


def _report(name: str, outcome: Outcome) -> str:
    statuses = dict(outcome.statuses or {})
    return f"{name}: {outcome.made} attempts, {outcome.allowed} allowed, {statuses}"


def test_limiter_holds_against_a_botnet(relay):
    """R20, A1: per-address limits, X-Forwarded-For believed only from the trusted proxy and
    only its rightmost hop, and a global cap that many addresses cannot get around."""
    lines = []
    # 1. A direct client forging X-Forwarded-For is keyed by its socket address.
    forged = attack(relay, login_attempts("127.0.0.1", [f"203.0.113.{i}" for i in range(20)], 1))
    lines.append(_report("direct client forging 20 X-Forwarded-For values", forged))
    assert forged.allowed == PER_ADDRESS

    # 2. Behind the trusted proxy the forwarded address is the key: two clients, a full
    #    allowance each; a forged left part of the header does not make a new client.
    first = attack(relay, login_attempts(PROXY, ["198.51.100.7"], 6))
    second = attack(relay, login_attempts(PROXY, ["198.51.100.8"], 6))
    chained = attack(
        relay, login_attempts(PROXY, [f"10.9.9.{i}, 198.51.100.7" for i in range(6)], 1)
    )
    lines += [_report("proxied client A", first), _report("proxied client B", second)]
    lines.append(_report("client A forging the left of X-Forwarded-For", chained))
    assert (first.allowed, second.allowed, chained.allowed) == (PER_ADDRESS, PER_ADDRESS, 0)

    # 3. A botnet of 100 addresses behind the proxy meets the global ceiling.
    used = forged.allowed + first.allowed + second.allowed
    botnet = attack(relay, login_attempts(PROXY, [f"192.0.2.{i}" for i in range(100)], 3))
    lines.append(_report("100-address botnet behind the proxy", botnet))
    assert botnet.allowed == GLOBAL - used

    # 4. Every attempt counts: now even the right recovery token is refused.
    res = relay.client("127.0.0.9").post(
        "/api/v1/auth/bootstrap", json={"token": relay.process.setup.token}
    )
    assert res.status_code == 429

    # 5. Pairing codes have their own limiter, with the same global ceiling, here against
    #    40 distinct direct source addresses.
    sources = [f"127.0.0.{i}" for i in range(10, 50)]
    pairs = attack(relay, [(s, None, _pair_guess) for s in sources for _ in range(4)])
    lines.append(_report("40 direct addresses guessing pairing codes", pairs))
    assert pairs.allowed == GLOBAL

    total = forged.made + first.made + second.made + chained.made + botnet.made
    allowed = forged.allowed + first.allowed + second.allowed + botnet.allowed
    lines.append(f"login-limited total: {total} attempts, {allowed} allowed (cap {GLOBAL})")
    print("\n".join(lines))  # the figures the proof reports
    assert allowed == GLOBAL


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_limiter_window_under_a_large_botnet(relay):
    """R20, A1: 1,000 addresses x 3 guesses get no more than the global cap through, and
    the window moves on: after Retry-After the relay answers again (no permanent lockout)."""
    botnet = attack(
        relay, login_attempts(PROXY, [f"100.64.{i // 250}.{i % 250}" for i in range(1000)], 3)
    )
    print(_report("1000-address botnet", botnet))  # the figures the proof reports
    assert botnet.allowed == GLOBAL
    res = relay.client(PROXY).post(
        "/api/v1/auth/bootstrap", json={"token": "x"}, headers={"X-Forwarded-For": "192.0.2.1"}
    )
    assert res.status_code == 429
    started = time.monotonic()
    retry = int(res.headers["Retry-After"])
    assert retry <= 60

    def answered() -> bool:
        again = relay.client(PROXY).post(
            "/api/v1/auth/bootstrap",
            json={"token": relay.process.setup.token},
            headers={"X-Forwarded-For": "192.0.2.1"},
        )
        return again.status_code == 200

    wait_until(answered, timeout=retry + 15, what="the window to move on")
    assert time.monotonic() - started >= retry - 2
