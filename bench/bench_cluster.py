"""Relay instances on PostgreSQL behind Caddy: one instance vs three, in the same run.

For each size, a fresh database on a real PostgreSQL server, N real relay processes behind a
real Caddy (deploy/cluster/Caddyfile), three real agents paired through the proxy (so with
three instances they land on different ones) and a phone talking to the proxy:
- submit -> agent start (`running` on the phone's event stream) and submit -> completed,
  p50/p99 over sequential tasks spread over the agents (most reach their agent through
  another instance than the one that took the request);
- completed tasks/s with 8 concurrent submitters.

Run: ``python -m bench.bench_cluster [N]`` (default 150 sequential tasks, 4N in the burst).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.cluster import RelayCluster
from tests.pgserver import PgServer

from bench.bench_tasks import TERMINAL, EventClock, pct

AGENTS = 3
NOOP = {"noop": {"label": "No-op", "argv": ["true"]}}


def _body(n: int) -> dict[str, str]:
    return {"agentId": f"box{n % AGENTS}", "type": "run_action", "actionId": "noop"}


def latency(phone: httpx.Client, clock: EventClock, wid: str, count: int) -> dict[str, Any]:
    """Per task: submit -> running and submit -> completed. An instance that learns of a
    task's start and end together (through the database's change notices) tells only the
    end; such a task's start counts at its end, and how many there were is reported."""
    to_start, to_done, unseen = [], [], 0
    for n in range(count):
        sent = time.perf_counter()
        res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=_body(n))
        task_id = res.json()["task"]["id"]
        done = clock.wait(task_id, "completed")
        started = clock.stamps.get((task_id, "running"))
        unseen += started is None
        to_done.append(done - sent)
        to_start.append((started or done) - sent)
    return {"to_start": to_start, "to_done": to_done, "start_unseen": unseen}


def throughput(front: Any, phone: httpx.Client, wid: str, count: int) -> tuple[float, dict]:
    """Completed tasks/s from 8 concurrent submitters; completion read from the task list
    four times a second, so the reading costs the relays little."""
    setup = front.setup

    def submitter(start: int) -> list[str]:
        with httpx.Client(
            base_url=setup.base_url,
            cookies=phone.cookies,
            headers={"Origin": setup.origin},
            timeout=30,
        ) as client:
            return [
                client.post(f"/api/v1/workspaces/{wid}/tasks", json=_body(start + i)).json()[
                    "task"
                ]["id"]
                for i in range(count // 8)
            ]

    started = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        ids = [i for chunk in pool.map(submitter, range(8)) for i in chunk]
    pending, ended = set(ids), Counter[str]()
    deadline = time.monotonic() + 300
    last = started
    while pending and time.monotonic() < deadline:
        listed = phone.get(f"/api/v1/workspaces/{wid}/tasks", params={"limit": 1000}).json()
        for task in listed["tasks"]:
            if task["id"] in pending and task["status"] in TERMINAL:
                pending.discard(task["id"])
                ended[task["status"]] += 1
                last = time.perf_counter()
        if pending:
            time.sleep(0.25)
    # The rate ends at the poll that saw the last task done (at most 0.25 s late).
    rate = ended["completed"] / (last - started)
    return rate, dict(ended) | ({"unfinished": len(pending)} if pending else {})


def run(server: PgServer, size: int, count: int, base: Path) -> dict[str, Any]:
    cluster = RelayCluster(base / f"n{size}", server.new_database(), size=size)
    cluster.start(maxTasksPerWorkspace=0)
    front = cluster.front
    phone = front.login()
    wid = default_workspace(phone)
    agents: list[AgentProcess] = []
    try:
        for i in range(AGENTS):
            agents.append(
                pair_agent(
                    front,
                    phone,
                    wid,
                    base / f"n{size}" / f"agent{i}",
                    agent_id=f"box{i}",
                    actions=NOOP,
                    maxConcurrentTasks=32,
                )
            )
        url = f"{front.setup.base_url}/api/v1/workspaces/{wid}/events"
        clock = EventClock(url, phone.cookies)
        clock.ready.wait(10)
        latency(phone, clock, wid, 10)  # warm-up: connections, caches
        figures: dict[str, Any] = dict(latency(phone, clock, wid, count))
        figures["rate"], figures["ended"] = throughput(front, phone, wid, count * 4)
    finally:
        for agent in agents:
            agent.stop()
        phone.close()
        cluster.stop()
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    count = int(argv[0]) if argv else 150
    server = PgServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            results = {size: run(server, size, count, Path(tmp)) for size in (1, 3)}
    finally:
        server.stop()
    print(f"PostgreSQL behind Caddy, {AGENTS} agents, {count} sequential tasks of `true`,")
    print(f"then {count * 4} from 8 concurrent submitters")
    for size, fig in results.items():
        start, done = fig["to_start"], fig["to_done"]
        print(
            f"  {size} instance{'s' if size > 1 else ' '}: submit -> agent start p50 "
            f"{pct(start, 0.5) * 1000:.1f} ms p99 {pct(start, 0.99) * 1000:.1f} ms; "
            f"submit -> completed p50 {pct(done, 0.5) * 1000:.1f} ms p99 "
            f"{pct(done, 0.99) * 1000:.1f} ms; {fig['rate']:.1f} completed tasks/s "
            f"{fig['ended']}; start told with the end for {fig['start_unseen']} of {count}"
        )


if __name__ == "__main__":
    main()
