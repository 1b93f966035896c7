"""Three instances on PostgreSQL behind Caddy, after one of them stopped without leaving:
what it left in the database is settled by the survivors (nothing stays ``dispatched``,
nothing runs twice), and a phone's event stream resumes on another instance from where it
was. The kill -9 storm itself is in test_cluster.py."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from codexrelay.agent.ledger import LEDGER_FILE
from codexrelay.relay.storage.pgdb import CHANNEL, UPSERT
from codexrelay.relay.storage.records import TaskRecord
from codexrelay.relay.storage.schema import task_row
from tests.agents import create_code, default_workspace, pair_agent
from tests.cluster import RelayCluster
from tests.helpers import RelayProcess, wait_until
from tests.integration.conftest import TERMINAL
from tests.pgserver import PgServer

ACTIONS = {"noop": {"label": "No-op", "argv": [sys.executable, "-c", "print('ran')"]}}


@pytest.fixture
def cluster(pg_server: PgServer, tmp_path: Path) -> Iterator[RelayCluster]:
    """Three instances and the proxy in front of them."""
    relays = RelayCluster(tmp_path, pg_server.new_database())
    try:
        yield relays.start(maxTasksPerWorkspace=0, maxPairAttemptsPerMinute=1000)
    finally:
        relays.stop()


def _task_doc(url: str, task_id: str) -> TaskRecord:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT doc FROM tasks WHERE key = %s", (task_id,)).fetchone()
    assert row is not None
    return TaskRecord.model_validate_json(str(row[0]))


def _last_commit_of_a_dead_instance(url: str, task: TaskRecord) -> None:
    """Write a task row and its change notice exactly as an instance's last commit does
    (the instance then dies before the hand-over it was about to make)."""
    notice = json.dumps({"n": "node_killed", "k": {"tasks": [task.id]}})
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        conn.execute(UPSERT["tasks"].encode(), task_row(task))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, notice))


def _submit(phone: httpx.Client, wid: str) -> str:
    body = {"agentId": "box", "type": "run_action", "actionId": "noop"}
    res = phone.post(f"/api/v1/workspaces/{wid}/tasks", json=body)
    assert res.status_code == 201, res.text
    return str(res.json()["task"]["id"])


def _ended(phone: httpx.Client, wid: str, task_id: str) -> dict[str, object]:
    def ended() -> dict[str, object] | None:
        task = phone.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()["task"]
        return task if task["status"] in TERMINAL else None

    found: dict[str, object] = wait_until(ended, timeout=30, what=f"{task_id} to end")
    return found


def test_a_lost_handover_is_interrupted_and_never_runs(
    cluster: RelayCluster, tmp_path: Path
) -> None:
    """A task an instance saved as ``dispatched`` and then died before handing over (its
    agent stayed connected to a live instance): the agent's holder interrupts it with a
    clear reason instead of leaving it ``dispatched``; the agent never ran it; a task
    handed over normally at the same time is untouched."""
    front = cluster.front
    phone = front.login()
    wid = default_workspace(phone)
    agent = pair_agent(front, phone, wid, tmp_path / "agent", agent_id="box", actions=ACTIONS)
    try:
        first = _submit(phone, wid)
        assert _ended(phone, wid, first)["status"] == "completed"
        model = _task_doc(cluster.database_url, first)
        old = datetime.now(UTC) - timedelta(seconds=30)
        lost = model.model_copy(
            update={
                "id": "tsk_lostinhandover01",
                "status": "dispatched",
                "created_at": old,
                "updated_at": old,
                "finished_at": None,
                "started_at": None,
                "exit_code": None,
            }
        )
        _last_commit_of_a_dead_instance(cluster.database_url, lost)
        ended = _ended(phone, wid, lost.id)
        second = _submit(phone, wid)
        assert _ended(phone, wid, second)["status"] == "completed"
    finally:
        phone.close()
        agent.stop()
    assert (ended["status"], ended.get("reason")) == ("interrupted", "relay-instance-lost")
    ledger = (tmp_path / "agent" / "state" / LEDGER_FILE).read_text()
    assert first in ledger
    assert second in ledger
    assert lost.id not in ledger


def test_one_survivor_takes_a_dead_instances_leases_over(cluster: RelayCluster) -> None:
    """An instance whose registration lapsed (killed, never renewed): exactly one survivor
    removes it and takes its agents' leases over."""
    with psycopg.connect(cluster.database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO instances (id, address, expires_at) "
            "VALUES ('node_killed', 'http://127.0.0.1:9', now() - interval '1 second')"
        )
        conn.execute(
            "INSERT INTO agent_leases (agent_key, instance_id, generation, expires_at) "
            "VALUES ('ag_left_behind', 'node_killed', 1, now() - interval '1 second')"
        )

    def swept() -> bool:
        with psycopg.connect(cluster.database_url) as conn:
            rows = conn.execute(
                "SELECT (SELECT count(*) FROM instances WHERE id = 'node_killed') + "
                "(SELECT count(*) FROM agent_leases WHERE instance_id = 'node_killed')"
            ).fetchone()
        return rows is not None and rows[0] == 0

    wait_until(swept, timeout=20, what="the dead instance swept")
    time.sleep(4)  # every survivor has beaten at least once more
    sweeps = cluster.logs().count("instance(s) node_killed stopped without leaving")
    assert sweeps == 1, cluster.logs()[-3000:]


def _read_events(
    relay: RelayProcess, cookies: httpx.Cookies, wid: str, last_id: str | None, want: set[str]
) -> list[tuple[str, str, dict[str, object]]]:
    """Frames of a workspace's stream (resumed after ``last_id``) until every task in
    ``want`` has been seen ended, or the stream goes quiet."""
    frames: list[tuple[str, str, dict[str, object]]] = []
    ended: set[str] = set()
    headers = {"Last-Event-ID": last_id} if last_id else {}
    with httpx.Client(
        base_url=relay.setup.base_url,
        headers={"Origin": relay.setup.origin},
        cookies=cookies,
        timeout=httpx.Timeout(5, read=4),
    ) as client:
        try:
            with client.stream("GET", f"/api/v1/workspaces/{wid}/events", headers=headers) as res:
                event_id, kind = "", ""
                for line in res.iter_lines():
                    if line.startswith("id: "):
                        event_id = line[4:]
                    elif line.startswith("event: "):
                        kind = line[7:]
                    elif line.startswith("data: "):
                        data = json.loads(line[6:])
                        frames.append((event_id, kind, data))
                        task = data.get("task") if kind == "task" else None
                        if isinstance(task, dict) and task["status"] in TERMINAL:
                            ended.add(str(task["id"]))
                        if want and want <= ended:
                            return frames
        except httpx.ReadTimeout:
            pass
    return frames


def test_a_stream_resumes_on_another_instance(cluster: RelayCluster, tmp_path: Path) -> None:
    """A phone's stream on one instance stops after a task's end; tasks made and finished
    through the other instances meanwhile all reach it when it resumes on a third one with
    ``Last-Event-ID``, and what it had seen long before is not sent again."""
    one, two, three = cluster.relays
    phone = cluster.front.login()
    wid = default_workspace(phone)
    agent = pair_agent(
        cluster.front, phone, wid, tmp_path / "agent", agent_id="box", actions=ACTIONS
    )
    try:
        early = _submit(phone, wid)
        assert _ended(phone, wid, early)["status"] == "completed"
        time.sleep(4)  # longer than the replay margin: the early task is history
        first = _submit(phone, wid)
        # An id from the dawn of time: the stream replays the whole buffer, up to ``first``.
        replay = _read_events(one, phone.cookies, wid, "0-x-0", {first})
        last_id = replay[-1][0]
        later = []
        origin = {"Origin": cluster.front.setup.origin}
        for relay in (two, three, two):
            with httpx.Client(
                base_url=relay.setup.base_url, headers=origin, cookies=phone.cookies
            ) as direct:
                later.append(_submit(direct, wid))
        for task_id in later:
            assert _ended(phone, wid, task_id)["status"] == "completed"
        resumed = _read_events(three, phone.cookies, wid, last_id, set(later))
    finally:
        phone.close()
        agent.stop()
    ended = {
        str(d["task"]["id"])  # type: ignore[index]
        for _, kind, d in resumed
        if kind == "task" and d["task"]["status"] == "completed"  # type: ignore[index]
    }
    assert set(later) <= ended, resumed
    told = {str(d["task"]["id"]) for _, kind, d in resumed if kind == "task"}  # type: ignore[index]
    assert early not in told, "the resumed stream replayed events from long before its last"


def test_a_pairing_code_is_spent_once_across_instances(cluster: RelayCluster) -> None:
    """Two agents claim the same pairing code at the same moment on two instances (each
    with the code cached as unused): exactly one claim is accepted, every time."""
    phone = cluster.front.login()
    wid = default_workspace(phone)
    one, two = cluster.relays[0], cluster.relays[1]
    outcomes = []
    try:
        for n in range(6):
            code = create_code(phone, wid)
            time.sleep(0.3)  # both instances have the new code in their caches, unused
            start = threading.Barrier(2)

            def claim(
                relay: RelayProcess, agent_id: str, code: str = code, start: Any = start
            ) -> httpx.Response:
                body = {"code": code, "agentId": agent_id, "label": agent_id}
                with httpx.Client(base_url=relay.setup.base_url, timeout=10) as agent_http:
                    start.wait()
                    return agent_http.post("/api/v1/agent/pair", json=body)

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(claim, (one, two), (f"a{n}", f"b{n}")))
            outcomes.append(sorted(a.status_code for a in answers))
            refused = [a for a in answers if a.status_code == 400]
            assert all(a.json()["error"] == "invalid-or-expired-code" for a in refused)
    finally:
        phone.close()
    assert outcomes == [[202, 400]] * 6, outcomes


def test_an_agents_session_catalog_is_served_by_every_instance(
    cluster: RelayCluster, tmp_path: Path
) -> None:
    """The agent sends its Codex session catalog to the instance holding its socket; a
    phone on any instance sees it (handed from memory to memory, like task texts)."""
    phone = cluster.front.login()
    wid = default_workspace(phone)
    agent = pair_agent(
        cluster.front, phone, wid, tmp_path / "agent", agent_id="box", actions=ACTIONS
    )

    def missing() -> list[int]:
        absent = []
        for relay in cluster.relays:
            with relay.client(cookies=phone.cookies) as direct:
                shown = direct.get(f"/api/v1/workspaces/{wid}/agents/box/sessions").json()
            if shown.get("updatedAt") is None or not shown["agentOnline"]:
                absent.append(relay.setup.port)
        return absent

    try:
        wait_until(lambda: not missing(), timeout=20, what="the catalog on every instance")
    finally:
        phone.close()
        agent.stop()
