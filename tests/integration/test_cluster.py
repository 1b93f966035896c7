"""Three relay instances on one PostgreSQL database behind Caddy: any instance serves any
phone request, agent socket or event stream; work for an agent connected to another
instance reaches it; a task's texts can be read from every instance; nothing of a task's
content reaches the database."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.cluster import RelayCluster
from tests.helpers import wait_until
from tests.integration.conftest import TERMINAL
from tests.pgserver import PgServer

CANARY = "canary-7f3a-content-never-on-disk"
ACTIONS = {
    "noop": {"label": "No-op", "argv": ["true"]},
    "say": {"label": "Say", "argv": [sys.executable, "-c", f"print('{CANARY}')"]},
}


@pytest.fixture
def cluster(pg_server: PgServer, tmp_path: Path) -> Iterator[RelayCluster]:
    """Three instances and the proxy in front of them."""
    relays = RelayCluster(tmp_path, pg_server.new_database())
    try:
        yield relays.start(maxTasksPerWorkspace=0)
    finally:
        relays.stop()


def _holders(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT agent_key, instance_id FROM agent_leases").fetchall()
    return {str(k): str(i) for k, i in rows}


def test_any_instance_serves_any_request(cluster: RelayCluster, tmp_path: Path) -> None:
    """Agents paired through the proxy land on different instances; tasks submitted through
    the proxy (so mostly on another instance than the agent's) all complete once, and each
    instance shows the task's output from its own memory."""
    front = cluster.front
    phone = front.login()
    wid = default_workspace(phone)
    agents: list[AgentProcess] = []
    try:
        for i in range(3):
            agents.append(
                pair_agent(
                    front,
                    phone,
                    wid,
                    tmp_path / f"agent{i}",
                    agent_id=f"box{i}",
                    actions=ACTIONS,
                    maxConcurrentTasks=8,
                )
            )
        holders = _holders(cluster.database_url)
        assert len(holders) == 3
        ids = []
        for n in range(30):
            body = {"agentId": f"box{n % 3}", "type": "run_action", "actionId": "say"}
            res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
            assert res.status_code == 201, res.text
            ids.append(res.json()["task"]["id"])

        def finished() -> dict[str, str] | None:
            listed = phone.get(f"/api/v1/workspaces/{wid}/tasks", params={"limit": 100}).json()
            found = {t["id"]: t["status"] for t in listed["tasks"]}
            return found if all(found.get(t) in TERMINAL for t in ids) else None

        final = wait_until(finished, timeout=60, what="every task finished")
        assert {final[t] for t in ids} == {"completed"}, final
        for relay in cluster.relays:
            with relay.client(cookies=phone.cookies) as direct:
                shown = direct.get(f"/api/v1/workspaces/{wid}/tasks/{ids[-1]}").json()
            assert CANARY in str(shown), shown
    finally:
        phone.close()
        for agent in agents:
            agent.stop()
    assert CANARY not in cluster.logs()


def _database_files(server: PgServer, url: str) -> bytes:
    """The database's own files and the server's WAL: where a leak would land."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT oid FROM pg_database WHERE datname = current_database()"
        ).fetchone()
        conn.execute("CHECKPOINT")
    assert row is not None
    paths = [server.data_dir / "base" / str(row[0]), server.data_dir / "pg_wal"]
    return b"".join(
        f.read_bytes() for p in paths for f in sorted(p.rglob("*")) if f.is_file()
    )


def test_content_never_reaches_the_database(
    cluster: RelayCluster, pg_server: PgServer, tmp_path: Path
) -> None:
    """Canary: a prompt and an output that crossed instances are nowhere in the database's
    files (tables and WAL) nor in any relay log."""
    front = cluster.front
    phone = front.login()
    wid = default_workspace(phone)
    agent = pair_agent(front, phone, wid, tmp_path / "agent", agent_id="box", actions=ACTIONS)
    prompt = "canary-91c2-prompt-never-on-disk"
    try:
        ids = []
        for body in (
            {"agentId": "box", "type": "run_action", "actionId": "say"},
            {"agentId": "box", "type": "codex_exec", "prompt": prompt},
        ):
            res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
            assert res.status_code == 201, res.text
            ids.append(res.json()["task"]["id"])

        def missing() -> list[str]:
            found = []
            for relay in cluster.relays:
                with relay.client(cookies=phone.cookies) as direct:
                    texts = [
                        str(direct.get(f"/api/v1/workspaces/{wid}/tasks/{t}").json())
                        for t in ids
                    ]
                if CANARY not in texts[0] or prompt not in texts[1]:
                    found.append(f"{relay.setup.port}: {texts}")
            return found

        try:
            wait_until(lambda: not missing(), timeout=30, what="the texts on every instance")
        except AssertionError:
            raise AssertionError(missing()) from None
    finally:
        phone.close()
        agent.stop()
    stored = _database_files(pg_server, cluster.database_url)
    assert b"tsk_" in stored  # the metadata is there: the search looks in the right place
    assert CANARY.encode() not in stored
    assert prompt.encode() not in stored
    logs = cluster.logs()
    assert CANARY not in logs
    assert prompt not in logs
