"""Does a submit cost more when history is long? One relay and one agent, the submit round
trip measured over N sequential tasks with an empty history and with a long one (finished
tasks written straight into the stopped relay's store), on SQLite and, side by side, on the
JSON store (with a shorter history: it rewrites the whole document on every change).

Run: ``python -m bench.bench_history [SQLITE_HISTORY] [JSON_HISTORY]``
(defaults 1,000,000 and 20,000).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.agents import AgentProcess, default_workspace, pair_agent, wait_online
from tests.helpers import RelayProcess, write_relay_config

from bench.bench_tasks import pct
from codexrelay.relay.storage.schema import micros

SUBMITS = 300
BODY = {"agentId": "devbox", "type": "run_action", "actionId": "noop"}
# Inside the default retention (90 days), so the relay keeps them all during the run.
START = datetime.now(UTC) - timedelta(days=30)


def _doc(n: int, wid: str, agent_key: str) -> tuple[str, str, int, int]:
    task_id = f"tsk_hist{n:012d}"
    at = START + timedelta(seconds=n)
    stamp = at.isoformat().replace("+00:00", "Z")
    doc = (
        f'{{"id":"{task_id}","workspaceId":"{wid}","agentId":"devbox","agentKey":"{agent_key}",'
        f'"type":"run_action","status":"completed","createdBy":"usr_bench","createdAt":"{stamp}",'
        f'"updatedAt":"{stamp}","startedAt":"{stamp}","finishedAt":"{stamp}","actionId":"noop",'
        f'"exitCode":0}}'
    )
    return task_id, doc, micros(at), micros(at)


def seed_sqlite(data_dir: Path, count: int) -> None:
    """``count`` finished tasks of the workspace's agent, in one transaction."""
    with sqlite3.connect(data_dir / "relay.sqlite3") as conn:
        (agent_doc,) = conn.execute("SELECT doc FROM agents").fetchone()
        agent = json.loads(agent_doc)
        wid, key = agent["workspaceId"], agent["key"]
        rows = (
            (task_id, wid, key, 1, created, finished, doc)
            for task_id, doc, created, finished in (_doc(n, wid, key) for n in range(count))
        )
        conn.executemany(
            "INSERT INTO tasks (key, workspace_id, agent_key, finished, created_us, "
            "finished_us, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )


def seed_json(data_dir: Path, count: int) -> None:
    """``count`` finished tasks in ``state.json``."""
    path = data_dir / "state.json"
    state = json.loads(path.read_text())
    (agent,) = state["agents"].values()
    for n in range(count):
        task_id, doc, _, _ = _doc(n, agent["workspaceId"], agent["key"])
        state["tasks"][task_id] = json.loads(doc)
    path.write_text(json.dumps(state))


def measure(backend: str, history: int, base: Path) -> list[float]:
    """Submit round trips (seconds) with ``history`` finished tasks already stored."""
    setup = write_relay_config(base / "relay", maxTasksPerWorkspace=0, storage={"backend": backend})
    relay = RelayProcess(setup, base / "relay.log").start()
    phone = relay.login()
    wid = default_workspace(phone)
    actions = {"noop": {"label": "No-op", "argv": ["true"]}}
    agent = pair_agent(relay, phone, wid, base / "agent", actions=actions, maxConcurrentTasks=32)
    agent.stop()
    phone.close()
    relay.stop()
    if history:
        (seed_sqlite if backend == "sqlite" else seed_json)(setup.data_dir, history)
    relay.start(wait=False)
    relay.wait_ready(timeout=300)
    agent = AgentProcess(agent.config_path, agent.log_path).start("start")
    phone = relay.login()
    try:
        wait_online(phone, wid, "devbox", timeout=60)
        times = []
        for _ in range(SUBMITS):
            sent = time.perf_counter()
            res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=BODY)
            times.append(time.perf_counter() - sent)
            assert res.status_code == 201, res.text
        return times
    finally:
        agent.stop()
        phone.close()
        relay.stop()


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sizes = {"sqlite": int(argv[0]) if argv else 1_000_000}
    sizes["json"] = int(argv[1]) if len(argv) > 1 else 20_000
    print(f"submit round trip over {SUBMITS} sequential submits (ms)")
    for backend, history in sizes.items():
        figures = []
        for size in (0, history):
            with tempfile.TemporaryDirectory(prefix="bench-history-") as tmp:
                times = measure(backend, size, Path(tmp))
            figures.append(pct(times, 0.5))
            print(
                f"  {backend:6} {size:>9,} finished tasks: p50 {pct(times, 0.5) * 1000:6.2f}"
                f"   p99 {pct(times, 0.99) * 1000:6.2f}",
                flush=True,
            )
        print(f"  {backend:6} long history / empty (p50): {figures[1] / figures[0]:.2f}x")


if __name__ == "__main__":
    main()
