"""Tasks for an offline agent may wait for it: sent once when it connects, or expired
visibly when it does not come back in time (B4: at most once still holds)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from fastapi.testclient import TestClient

from codexrelay.relay.app import run_sweep
from tests.api.conftest import login, services_of
from tests.api.test_pairing_api import _hello, _paired_token, _wid
from tests.helpers import both_backends


@contextlib.contextmanager
def _connect(client: TestClient, token: str) -> Iterator[object]:
    """The paired agent's socket, after its hello was answered."""
    with client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(_hello("devbox"))
        assert ws.receive_json()["type"] == "welcome"
        yield ws


class Agent:
    """A paired agent's token; a renewal (the test's barrier) replaces it."""

    def __init__(self, token: str) -> None:
        self.token = token

    def tasks_sent(self, ws) -> list[dict]:
        """Every task the relay sent before answering a token renewal (it answers in
        order), keeping the renewed token for the next connection."""
        ws.send_json({"type": "token.renew"})
        seen = []
        while (message := ws.receive_json())["type"] != "token.renewed":
            seen.append(message)
        self.token = message["agentToken"]
        return [m for m in seen if m["type"] == "task"]


def _submit(client: TestClient, wid: str, **extra) -> dict:
    body = {"agentId": "devbox", "type": "run_action", "actionId": "tests", **extra}
    return client.post(f"/api/v1/workspaces/{wid}/tasks", json=body)


def _task(client: TestClient, wid: str, task_id: str) -> dict:
    return client.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()["task"]


def _offline_agent(client: TestClient) -> tuple[str, Agent]:
    """A paired agent that has announced its actions once and then gone away."""
    login(client)
    wid = _wid(client)
    agent = Agent(_paired_token(client, wid))
    with _connect(client, agent.token):
        pass
    return wid, agent


def test_offline_agent_without_waiting_is_refused(app_client):
    """Without queueTtlSec an offline agent is still 409 agent-offline, and nothing is kept."""
    wid, _ = _offline_agent(app_client)
    res = _submit(app_client, wid)
    assert (res.status_code, res.json()["error"]) == (409, "agent-offline")
    assert app_client.get(f"/api/v1/workspaces/{wid}/tasks").json()["tasks"] == []


def test_waiting_task_is_sent_once_when_the_agent_connects(app_client, clock):
    """A queued task shows how long it waits, goes out on the next connection exactly once,
    and a later reconnection does not send it again."""
    wid, agent = _offline_agent(app_client)
    res = _submit(app_client, wid, queueTtlSec=600)
    assert res.status_code == 201, res.text
    task = res.json()["task"]
    assert task["status"] == "queued"
    assert task["queuedUntil"] is not None
    clock.advance(120)
    with _connect(app_client, agent.token) as ws:
        assert [m["task"]["id"] for m in agent.tasks_sent(ws)] == [task["id"]]
        assert _task(app_client, wid, task["id"])["status"] == "dispatched"
    with _connect(app_client, agent.token) as ws:
        assert agent.tasks_sent(ws) == []


def test_waiting_task_expires_when_the_agent_stays_away(app_client, clock):
    """Past its wait the task is expired (with the reason) and is never sent afterwards."""
    wid, agent = _offline_agent(app_client)
    task_id = _submit(app_client, wid, queueTtlSec=60).json()["task"]["id"]
    clock.advance(61)
    run_sweep(services_of(app_client))
    expired = _task(app_client, wid, task_id)
    assert (expired["status"], expired["reason"]) == ("expired", "agent-did-not-return")
    with _connect(app_client, agent.token) as ws:
        assert agent.tasks_sent(ws) == []


def test_wait_that_ran_out_before_the_sweep_is_not_sent(app_client, clock):
    """An agent that connects after the wait ended but before the sweep gets nothing."""
    wid, agent = _offline_agent(app_client)
    task_id = _submit(app_client, wid, queueTtlSec=60).json()["task"]["id"]
    clock.advance(90)
    with _connect(app_client, agent.token) as ws:
        assert agent.tasks_sent(ws) == []
    assert _task(app_client, wid, task_id)["status"] == "expired"


def test_cancelled_waiting_task_is_never_sent(app_client):
    """Cancelling a queued task ends it on the relay; the agent never sees it."""
    wid, agent = _offline_agent(app_client)
    task_id = _submit(app_client, wid, queueTtlSec=600).json()["task"]["id"]
    res = app_client.post(f"/api/v1/workspaces/{wid}/tasks/{task_id}/cancel")
    assert res.json()["task"]["status"] == "cancelled"
    with _connect(app_client, agent.token) as ws:
        assert agent.tasks_sent(ws) == []


def test_waiting_queue_is_bounded(app_client):
    """At most 50 tasks wait for one agent; the next is 409 queue-full."""
    wid, _ = _offline_agent(app_client)
    for _ in range(50):
        assert _submit(app_client, wid, queueTtlSec=600).status_code == 201
    res = _submit(app_client, wid, queueTtlSec=600)
    assert (res.status_code, res.json()["error"]) == (409, "queue-full")


@both_backends
def test_waiting_task_keeps_its_prompt_in_memory_only(app_client):
    """A queued Codex task's prompt reaches the agent from relay memory, never from disk."""
    wid, agent = _offline_agent(app_client)
    body = {"agentId": "devbox", "type": "codex_exec", "prompt": "queued-canary-7d1f"}
    res = app_client.post(f"/api/v1/workspaces/{wid}/tasks", json={**body, "queueTtlSec": 600})
    assert res.status_code == 201, res.text
    assert "queued-canary-7d1f" not in app_client.setup.stored_text()
    with _connect(app_client, agent.token) as ws:
        sent = agent.tasks_sent(ws)
    assert sent[0]["task"]["prompt"] == "queued-canary-7d1f"
