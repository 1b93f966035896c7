"""What a protected workspace costs (TRUST.md §10 benchmarks).

- the relay's first filter per signed task (strict parse, body hash, log head, one
  py_webauthn verification, policy) against the same log, before it forwards anything;
- agent-side verification per statement: the whole §4.6 checklist (strict parse, body hash,
  relay-copy comparison, freshness, run-once, log head, signer lookup, py_webauthn,
  policy) against a pinned log of 12 entries (target <= 1 ms), and the durable records
  written before the task starts (passkey counters and the audit record, each fsynced);
- dispatch p50, submit -> the agent's ``running``, through a real relay and real agents on
  loopback: a plain task in an unprotected workspace vs a signed task in a protected one,
  not counting the person's touch (statements are signed before the clock starts;
  target <= +2 ms).

- a signed thread start through the agent's conversation gate (the same checklist plus the
  binding of the turn statement to the request).

Run: ``.venv/bin/python -m bench.bench_trust [--runs 300] [--tasks 200] [--no-dispatch]``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from tests import sealkit
from tests.agents import AgentProcess, write_agent_config
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.softauthn import COOKIE, Phone
from tests.trustkit import TrustedPhone, dumps
from tests.unit.test_agent_trust import AGENT, World

from bench.bench_tasks import EventClock, pct
from codexrelay.agent.gate import TrustGate
from codexrelay.e2e.policy import default_policy


def verify_cost(runs: int) -> tuple[float, float]:
    """Median ms of the checklist, and of the durable records, per statement."""
    with tempfile.TemporaryDirectory(prefix="bench-trust-") as tmp:
        world = World(Path(tmp))
        for n in range(5):
            world.kit.member(f"u_extra{n}", "member")
        from codexrelay.e2e.log import parse_signed  # noqa: PLC0415 - bench only

        pinned = world.store.view().head.seq + 1
        world.store.extend([parse_signed(e, i) for i, e in enumerate(world.kit.signed)][pinned:])
        specs = [world.spec(*world.statement(world.member), [world.member]) for _ in range(runs)]
        checker = world.checker()
        gate = TrustGate(world.store, world.keys, agent_id=AGENT, seen=world.seen.__contains__)
        checks, records = [], []
        loop = asyncio.new_event_loop()
        for spec in specs:
            start = time.perf_counter()
            accepted = loop.run_until_complete(checker.check_task(spec))
            checks.append((time.perf_counter() - start) * 1000)
            assert accepted is not None
            start = time.perf_counter()
            gate.accepted(spec, accepted)
            records.append((time.perf_counter() - start) * 1000)
    return statistics.median(checks), statistics.median(records)


def relay_cost(runs: int) -> float:
    """Median ms of the relay's first filter (``relay.trust.signed``) per signed task."""
    from codexrelay.relay.trust import signed as first  # noqa: PLC0415 - bench only

    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        world = World(Path(tmp))
        view, now = world.kit.view(), int(world.clock)
        specs = [world.spec(*world.statement(world.member), [world.member]) for _ in range(runs)]
        times = []
        for spec in specs:
            assert spec.signed is not None
            start = time.perf_counter()
            checked = first.parse_task(view, view.ws, spec.signed.stmt, spec.signed.body, now)
            user = world.member.user_id
            first.check_signatures(view, checked, spec.signed.auth, caller_id=user, now=now)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def turn_cost(runs: int) -> float:
    """Median ms of a signed thread start through the agent's conversation gate: the same
    checklist plus the binding to the request (input hash, mode, plain copy)."""
    from tests.unit.test_agent_convgate import Conv  # noqa: PLC0415 - bench only

    with tempfile.TemporaryDirectory(prefix="bench-turn-") as tmp:
        conv = Conv(Path(tmp))
        requests = [conv.start(f"Explain step {n}") for n in range(runs)]
        loop = asyncio.new_event_loop()
        times = []
        for request in requests:
            start = time.perf_counter()
            admitted = loop.run_until_complete(conv.gate.admit(request, None))
            times.append((time.perf_counter() - start) * 1000)
            assert admitted is not None
    return statistics.median(times)


def _agent(relay: RelayProcess, base: Path, agent_id: str, code: str) -> AgentProcess:
    config = write_agent_config(
        base / agent_id,
        relay.setup.base_url,
        agent_id=agent_id,
        actions={"noop": {"label": "No-op", "argv": ["true"]}},
        maxConcurrentTasks=8,
    )
    return AgentProcess(config, base / f"{agent_id}.log").start("pair", "--pair-code", code)


def _pending(owner: TrustedPhone, wid: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        listed = owner.phone.get(f"/api/v1/workspaces/{wid}/pair-requests").json()
        return next((r for r in listed["pairRequests"] if r["status"] == "pending"), None)

    found: dict[str, Any] = wait_until(find, timeout=30, what="a pair request")
    return found


def _online(owner: TrustedPhone, wid: str, agent_id: str, *, pinned: bool) -> None:
    def check() -> bool:
        agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
        return any(
            a["agentId"] == agent_id and a["online"] and (a.get("trust") or not pinned)
            for a in agents
        )

    wait_until(check, timeout=30, what=f"{agent_id} online")


def _clock(relay: RelayProcess, owner: TrustedPhone, wid: str) -> EventClock:
    cookies = httpx.Cookies({COOKIE: owner.phone.cookie or ""})
    clock = EventClock(f"{relay.setup.base_url}/api/v1/workspaces/{wid}/events", cookies)
    clock.ready.wait(10)
    return clock


def _protected(
    owner: TrustedPhone, relay: RelayProcess, base: Path, name: str, policy: Any = None
) -> tuple[Any, str, AgentProcess]:
    """A new protected workspace with its own pinned agent (named like the workspace)."""
    made = owner.phone.post("/api/v1/workspaces", json={"name": name})
    wid = made.json()["workspace"]["id"]
    book, _ = owner.genesis(wid, policy)
    owner.sudo()
    pairing = owner.pairing_code(wid)
    agent = _agent(relay, base, name.lower(), pairing.shown)
    owner.sudo()
    owner.approve(book, _pending(owner, wid), pairing)
    _online(owner, wid, name.lower(), pinned=True)
    return book, wid, agent


def dispatch(tasks: int) -> tuple[list[float], list[float], list[float], list[float]]:
    """Submit -> running, in seconds, for plain, signed and sealed tasks, taken in turns so
    all see the same machine load; and the phone's sealing time per sealed task."""
    with tempfile.TemporaryDirectory(prefix="bench-trust-dispatch-") as tmp:
        base = Path(tmp)
        setup = write_relay_config(base / "relay", maxTasksPerWorkspace=100000)
        relay = RelayProcess(setup, base / "relay.log").start()
        owner = TrustedPhone.enroll(Phone(relay.client()).bootstrap(setup.token), "localhost")
        plain_ws = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        agents = []
        try:
            code = owner.phone.post(f"/api/v1/workspaces/{plain_ws}/pairings", json={})
            agents.append(_agent(relay, base, "plain", code.json()["code"]))
            request = _pending(owner, plain_ws)
            owner.phone.post(f"/api/v1/workspaces/{plain_ws}/pair-requests/{request['id']}/approve")
            _online(owner, plain_ws, "plain", pinned=False)
            book, wid, agent = _protected(owner, relay, base, "Pinned")
            agents.append(agent)
            policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
            sealed_book, sealed_ws, agent = _protected(owner, relay, base, "Sealed", policy)
            agents.append(agent)
            clocks = (
                _clock(relay, owner, plain_ws),
                _clock(relay, owner, wid),
                _clock(relay, owner, sealed_ws),
            )
            plain, signed, sealed, sealing = [], [], [], []
            for _ in range(tasks):
                plain.append(_run_plain(owner, plain_ws, clocks[0]))
                signed.append(_run_signed(owner, book, clocks[1]))
                took, sealed_in = _run_sealed(owner, sealed_book, clocks[2])
                sealed.append(took)
                sealing.append(sealed_in)
        finally:
            for agent in agents:
                agent.stop()
            owner.phone.client.close()
            relay.stop()
    return plain, signed, sealed, sealing


def _run_plain(owner: TrustedPhone, wid: str, clock: EventClock) -> float:
    body = {"agentId": "plain", "type": "run_action", "actionId": "noop"}
    sent = time.perf_counter()
    res = owner.phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
    return clock.wait(res.json()["task"]["id"], "running") - sent


def _run_signed(owner: TrustedPhone, book: Any, clock: EventClock) -> float:
    stmt, body = owner.task(book, "pinned", actionId="noop")
    request = owner.signed_task(stmt, body)  # the person's touch: before the clock
    sent = time.perf_counter()
    res = owner.submit(book, request)
    assert res.status_code == 201, res.text
    return clock.wait(stmt["task"], "running") - sent


def _run_sealed(owner: TrustedPhone, book: Any, clock: EventClock) -> tuple[float, float]:
    """Submit -> running of a sealed task, and the phone's sealing (task key, HPKE wraps to
    the agent and the device, the submission envelope) before it, both in seconds."""
    stmt, body = owner.task(book, "sealed", actionId="noop")
    raw = dumps(stmt)
    auth = [owner.sign("task", raw)]  # the person's touch: before the clock
    view = sealkit.verified_view(owner, book)  # the phone's verified log, held between tasks
    started = time.perf_counter()
    request, _ = sealkit.seal(owner, view, stmt, body, auth=auth)
    sent = time.perf_counter()
    res = sealkit.submit(owner, book.ws, request)
    assert res.status_code == 201, res.text
    return clock.wait(stmt["task"], "running") - sent, sent - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--no-dispatch", action="store_true", help="the per-statement costs only")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(f"relay first filter per signed task: {relay_cost(args.runs):.3f} ms")
    check, record = verify_cost(args.runs)
    print(f"agent checklist per statement: {check:.3f} ms (target <= 1 ms)")
    print(f"durable audit record before start (counters and run-once in it): {record:.3f} ms")
    print(f"signed thread start through the conversation gate: {turn_cost(args.runs):.3f} ms")
    if args.no_dispatch:
        return
    plain, signed, sealed, sealing = dispatch(args.tasks)
    p_plain, p_signed = pct(plain, 0.5) * 1000, pct(signed, 0.5) * 1000
    p_sealed, p_sealing = pct(sealed, 0.5) * 1000, pct(sealing, 0.5) * 1000
    print(
        f"dispatch p50, submit -> running: plain {p_plain:.1f} ms, signed {p_signed:.1f} ms, "
        f"+{p_signed - p_plain:.1f} ms (target <= +2 ms); p99 plain "
        f"{pct(plain, 0.99) * 1000:.1f} ms, signed {pct(signed, 0.99) * 1000:.1f} ms"
    )
    print(
        f"dispatch p50, submit -> running: sealed {p_sealed:.1f} ms, +{p_sealed - p_plain:.1f} "
        f"ms over plain (target <= +2 ms), +{p_sealed - p_signed:.1f} ms over signed; p99 "
        f"{pct(sealed, 0.99) * 1000:.1f} ms; the phone's sealing before the send p50 "
        f"{p_sealing:.2f} ms"
    )


if __name__ == "__main__":
    main()
