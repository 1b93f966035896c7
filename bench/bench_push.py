"""Push fan-out: one event notified to 1,000 subscribed devices through a real relay.

A real relay subprocess holds N subscriptions (one per device session of the owner, each
with its own keys at the loopback push service stand-in). An agent claims a pairing code,
which notifies every admin's device. Measured:
- how long the claim request took (it only queues: push is off the request path);
- time from the claim until the stand-in holds all N notifications (decrypted and their
  VAPID token checked, so each one is a real RFC 8291/8292 message);
- the relay process's CPU time (user + system, from /proc) per notification.

Run: ``python -m bench.bench_push [N]`` (default 1000).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from tests.agents import default_workspace
from tests.fakes.push_service import PushServiceStandIn
from tests.helpers import RelayProcess, wait_until, write_relay_config

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def subscribe_devices(
    relay: RelayProcess, stand_in: PushServiceStandIn, count: int
) -> httpx.Client:
    """``count`` device sessions of the owner, each with its own subscription; the last
    device's client, still signed in."""

    def one(_: int) -> httpx.Client:
        phone = relay.login()
        body = {"subscription": stand_in.new_device().subscription_json()}
        res = phone.post("/api/v1/me/push-subscriptions", json=body)
        assert res.status_code == 201, res.text
        return phone

    with ThreadPoolExecutor(max_workers=8) as pool:
        phones = list(pool.map(one, range(count)))
    for phone in phones[:-1]:
        phone.close()
    return phones[-1]


def main(count: int = 1000) -> None:
    stand_in = PushServiceStandIn().start()
    with tempfile.TemporaryDirectory(prefix="bench-push-") as tmp:
        setup = write_relay_config(
            Path(tmp) / "relay",
            maxSessionsPerUser=count,
            maxLoginAttemptsPerMinute=100000,
            push={"allowedHosts": ["127.0.0.1"]},
        )
        relay = RelayProcess(setup, Path(tmp) / "relay.log").start()
        try:
            started = time.perf_counter()
            phone = subscribe_devices(relay, stand_in, count)
            print(f"set-up: {count} devices subscribed in {time.perf_counter() - started:.1f} s")
            wid = default_workspace(phone)
            code = phone.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
            phone.close()
            assert relay.proc is not None
            pid = relay.proc.pid
            with httpx.Client(base_url=setup.base_url, timeout=30) as agent:
                cpu_before = cpu_seconds(pid)
                t0 = time.perf_counter()
                claim = {"code": code, "agentId": "b", "label": "B"}
                res = agent.post("/api/v1/agent/pair", json=claim)
                claim_ms = (time.perf_counter() - t0) * 1000
                assert res.status_code == 202, res.text
                wait_until(lambda: len(stand_in.received()) >= count, timeout=300, what="fan-out")
                total = time.perf_counter() - t0
                cpu = cpu_seconds(pid) - cpu_before
            assert stand_in.errors == [], stand_in.errors[:3]
            assert len(stand_in.received()) == count
            print(f"claim request (queues {count} notifications): {claim_ms:.1f} ms")
            print(f"all {count} handed to the push service in {total:.2f} s "
                  f"({count / total:.0f} notifications/s)")  # fmt: skip
            print(f"relay CPU: {cpu:.2f} s in all, {cpu / count * 1000:.2f} ms per notification")
        finally:
            relay.stop()
            stand_in.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
