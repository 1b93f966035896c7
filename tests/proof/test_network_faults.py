"""Network faults between a real agent and a real relay during task streams (B4, R07, I1).

The agent reaches the relay only through ``tests/fakes/tcp_proxy.py``, which delays,
resets and black-holes its connections at random while a phone submits a stream of
actions. The action appends a line to a marker file each time it runs. Afterwards:

- every task the relay created ends in a terminal state (none left dispatched or running:
  lost reports become ``interrupted`` through the reconnect's hello or the grace period);
- no task ran twice: the agent's ledger holds each id once, the agent finished each id at
  most once, and the marker has exactly one line per run the agent completed;
- the relay never calls a task completed that the agent did not complete;
- the agent always comes back online.
"""

from __future__ import annotations

import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from codexrelay.agent.ledger import LEDGER_FILE
from tests.agents import (
    AgentProcess,
    create_code,
    default_workspace,
    pending_request,
    wait_online,
    write_agent_config,
)
from tests.fakes.tcp_proxy import ProxyThread
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.conftest import TERMINAL

FINISHED = re.compile(r"task (\S+) finished: (\w+)")


@dataclass
class FaultWorld:
    """A relay, a proxy in front of it, and an agent that only knows the proxy."""

    relay: RelayProcess
    proxy: ProxyThread
    phone: httpx.Client
    wid: str
    agent: AgentProcess
    dir: Path

    @property
    def marker(self) -> Path:
        return self.dir / "agent" / "ticks.txt"


@pytest.fixture
def fault_world(tmp_path: Path) -> Iterator[FaultWorld]:
    """Pair the agent through the (still healthy) proxy and leave it serving."""
    relay = RelayProcess(write_relay_config(tmp_path / "relay"), tmp_path / "relay.log").start()
    proxy = ProxyThread("127.0.0.1", relay.setup.port, seed=7).start()
    phone = relay.login()
    agent: AgentProcess | None = None
    try:
        wid = default_workspace(phone)
        marker = tmp_path / "agent" / "ticks.txt"
        tick = f"import time; time.sleep(0.2); open({str(marker)!r}, 'a').write('tick\\n')"
        config = write_agent_config(
            tmp_path / "agent",
            f"http://127.0.0.1:{proxy.port}",
            actions={"tick": {"label": "Tick", "argv": [sys.executable, "-c", tick]}},
            maxConcurrentTasks=4,
        )
        agent = AgentProcess(config, tmp_path / "agent" / "agent.log")
        agent.start("pair", "--pair-code", create_code(phone, wid))
        request = pending_request(phone, wid, "devbox")
        phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve")
        wait_online(phone, wid, "devbox")
        yield FaultWorld(relay, proxy, phone, wid, agent, tmp_path)
    finally:
        if agent is not None:
            agent.stop()
        proxy.stop()
        phone.close()
        relay.stop()


@dataclass
class Stream:
    """What the phone submitted while the network misbehaved."""

    created: list[str] = field(default_factory=list)
    offline: int = 0
    other: Counter[int] = field(default_factory=Counter)


def submit_stream(world: FaultWorld, stop: threading.Event, stream: Stream) -> None:
    """Submit an action every 150 ms until told to stop."""
    with httpx.Client(
        base_url=world.relay.setup.base_url,
        cookies=world.phone.cookies,
        headers={"Origin": world.relay.setup.origin},
        timeout=10,
    ) as client:
        while not stop.wait(0.15):
            res = client.post(
                f"/api/v1/workspaces/{world.wid}/tasks",
                json={"agentId": "devbox", "type": "run_action", "actionId": "tick"},
            )
            if res.status_code == 201:
                stream.created.append(res.json()["task"]["id"])
            elif res.status_code == 409:
                stream.offline += 1
            else:
                stream.other[res.status_code] += 1


def chaos(world: FaultWorld, stop: threading.Event, rng: random.Random, long_holes: bool) -> None:
    """Random faults until told to stop; each leaves the network healthy when it ends."""
    proxy = world.proxy
    while not stop.wait(rng.uniform(0.3, 1.2)):
        fault = rng.choice(["cut", "cut", "delay", "flaky", "hole"])
        if fault == "cut":
            proxy.cut_all()
        elif fault == "delay":
            proxy.set(delay=rng.uniform(0.01, 0.3))
            stop.wait(rng.uniform(0.5, 2))
            proxy.set(delay=0.0)
        elif fault == "flaky":
            proxy.set(cut_chance=0.05)
            stop.wait(rng.uniform(0.5, 2))
            proxy.set(cut_chance=0.0)
        else:
            # Long holes outlast the ping timeout (10 s + 10 s) on both ends.
            hold = rng.uniform(22, 28) if long_holes and rng.random() < 0.3 else rng.uniform(1, 4)
            proxy.blackhole(True)
            stop.wait(hold)
            proxy.blackhole(False)


def _tasks(world: FaultWorld) -> dict[str, dict]:
    listed = world.phone.get(f"/api/v1/workspaces/{world.wid}/tasks").json()["tasks"]
    return {t["id"]: t for t in listed}


def run_under_faults(world: FaultWorld, seconds: float, seed: int, *, long_holes: bool) -> str:
    """Stream tasks through ``seconds`` of faults, settle, and check every invariant."""
    rng = random.Random(seed)
    stop, stream = threading.Event(), Stream()
    workers = [
        threading.Thread(target=submit_stream, args=(world, stop, stream)),
        threading.Thread(target=chaos, args=(world, stop, rng, long_holes)),
    ]
    for worker in workers:
        worker.start()
    try:
        stop.wait(seconds)
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    world.proxy.set(delay=0.0, cut_chance=0.0)
    world.proxy.blackhole(False)
    healed = time.monotonic()
    wait_online(world.phone, world.wid, "devbox", timeout=60)
    back = time.monotonic() - healed
    created = set(stream.created)

    def settled() -> dict[str, dict] | None:
        tasks = _tasks(world)
        return tasks if all(tasks[t]["status"] in TERMINAL for t in created) else None

    tasks = wait_until(settled, timeout=90, what="every task to reach a terminal state")
    assert created <= set(tasks), "a created task vanished from the list"

    log = world.agent.logs()
    finished = Counter(task_id for task_id, _ in FINISHED.findall(log))
    completed = {task_id for task_id, status in FINISHED.findall(log) if status == "completed"}
    twice = [task_id for task_id, n in finished.items() if n > 1]
    assert not twice, f"tasks the agent finished twice: {twice}"
    ledger = (world.dir / "agent" / "state" / LEDGER_FILE).read_text().split()
    assert len(ledger) == len(set(ledger)), "a task id was recorded twice"
    ticks = world.marker.read_text().count("tick") if world.marker.exists() else 0
    assert ticks == len(completed), f"{ticks} runs for {len(completed)} completed tasks"
    relay_completed = {t for t in created if tasks[t]["status"] == "completed"}
    assert relay_completed <= completed, "the relay reports completions the agent never made"
    statuses = Counter(tasks[t]["status"] for t in created)
    reasons = Counter(tasks[t]["reason"] for t in created if tasks[t]["status"] == "interrupted")
    connects = log.count("connected to ")
    assert connects >= 2, "the faults never made the agent reconnect"
    assert len(created) >= 10
    return (
        f"{len(created)} tasks ({dict(statuses)}; interrupted: {dict(reasons)}), "
        f"{stream.offline} refused as agent-offline, {ticks} runs for {len(completed)} "
        f"completions, {connects} connections, proxy {world.proxy.stats()}, "
        f"online {back:.1f}s after the network healed"
    )


def test_task_stream_survives_network_faults(fault_world):
    """B4: under resets, latency, flaky links and short black holes, every task ends,
    none runs twice, and the agent reconnects."""
    check_proxy_bites(fault_world)
    report = run_under_faults(fault_world, seconds=10, seed=11, long_holes=False)
    print(report)  # the figures the proof reports


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_task_stream_survives_long_network_faults(fault_world):
    """B4: two minutes of faults, including black holes longer than the ping timeout and
    the relay's grace period: every task ends, none runs twice, the agent comes back."""
    report = run_under_faults(fault_world, seconds=120, seed=int(time.time()), long_holes=True)
    print(report)  # the figures the proof reports


def check_proxy_bites(world: FaultWorld) -> None:
    """The proxy's knobs are real: a cut drops the agent, a black hole holds its traffic."""
    assert world.proxy.live() >= 1
    before = world.agent.logs().count("connected to ")
    assert world.proxy.cut_all() >= 1
    wait_until(
        lambda: world.agent.logs().count("connected to ") > before, timeout=30, what="reconnect"
    )
    # The agent's socket is open before the relay has read its hello: wait for the relay too.
    wait_online(world.phone, world.wid, "devbox", timeout=30)
    world.proxy.blackhole(True)
    try:
        res = world.phone.post(
            f"/api/v1/workspaces/{world.wid}/tasks",
            json={"agentId": "devbox", "type": "run_action", "actionId": "tick"},
        )
        task_id = res.json()["task"]["id"]
        assert _tasks(world)[task_id]["status"] == "dispatched"
    finally:
        world.proxy.blackhole(False)
    done = wait_until(
        lambda: (t := _tasks(world)[task_id])["status"] in TERMINAL and t, timeout=30, what="end"
    )
    assert done["status"] == "completed"
