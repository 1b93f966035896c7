"""Task rules in-process, with a test WebSocket as the agent (R09, R10, R17, R18, B4)."""

from __future__ import annotations

import contextlib

import pytest

from codexrelay.relay.storage.records import Role
from codexrelay.relay.tasks.details import DetailsStore
from tests.api.conftest import login, sign_in_with_role
from tests.api.test_pairing_api import _hello, _paired_token, _wid
from tests.helpers import both_backends


@contextlib.contextmanager
def _agent(client, wid, agent_id="devbox", write=False):
    token = _paired_token(client, wid, agent_id)
    with client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(
            _hello(
                agent_id,
                features={
                    "codexExec": True,
                    "codexExecWrite": write,
                    "runAction": True,
                    "readLog": True,
                },
                logSources=[{"id": "app", "label": "App"}],
            )
        )
        ws.receive_json()
        yield ws


def _settle(ws) -> None:
    """Wait until the relay has handled everything sent so far on this agent socket: the
    relay answers messages in order, so a token renewal's answer is a barrier."""
    ws.send_json({"type": "token.renew"})
    assert ws.receive_json()["type"] == "token.renewed"


def _submit(client, wid, **body):
    return client.post(f"/api/v1/workspaces/{wid}/tasks", json={"agentId": "devbox", **body})


def _get(client, wid, task_id):
    return client.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()["task"]


def _owner_cookie(client):
    client.cookies.clear()
    login(client)


@both_backends
def test_dispatch_sends_task_and_reports_advance(app_client):
    """A task is sent at once; accepted/started/finished move it forward and hold texts."""
    login(app_client)
    wid = _wid(app_client)
    with _agent(app_client, wid) as ws:
        res = _submit(app_client, wid, type="codex_exec", prompt="hello there")
        assert res.status_code == 201
        task = res.json()["task"]
        assert task["status"] == "dispatched"
        sent = ws.receive_json()
        assert sent == {
            "type": "task",
            "task": {
                "id": task["id"],
                "type": "codex_exec",
                "prompt": "hello there",
                "writeAccess": False,
            },
        }
        ws.send_json({"type": "task.accepted", "taskId": task["id"]})
        ws.send_json({"type": "task.started", "taskId": task["id"]})
        ws.send_json(
            {
                "type": "task.progress",
                "taskId": task["id"],
                "seq": 1,
                "event": {"kind": "message", "text": "working"},
            }
        )
        ws.send_json(
            {
                "type": "task.finished",
                "taskId": task["id"],
                "status": "completed",
                "exitCode": 0,
                "finalMessage": "done",
                "outputTail": "out",
                "redactions": 2,
            }
        )
        _settle(ws)
    done = _get(app_client, wid, task["id"])
    assert done["status"] == "completed"
    assert done["finalMessage"] == "done"
    assert done["redactions"] == 2
    assert done["progress"] == [
        {
            "seq": 1,
            "kind": "message",
            "text": "working",
            "changes": [],
            "command": None,
            "exitCode": None,
            "status": None,
        }
    ]
    assert "hello there" not in app_client.setup.stored_text()


def test_reports_only_move_forward_and_only_from_the_right_agent(app_client):
    """A finished task never runs again; another agent cannot report on it."""
    login(app_client)
    wid = _wid(app_client)
    with _agent(app_client, wid) as ws:
        task_id = _submit(app_client, wid, type="run_action", actionId="tests").json()["task"]["id"]
        ws.receive_json()
        ws.send_json(
            {"type": "task.finished", "taskId": task_id, "status": "failed", "exitCode": 1}
        )
        ws.send_json({"type": "task.started", "taskId": task_id})
        ws.send_json(
            {"type": "task.finished", "taskId": task_id, "status": "completed", "exitCode": 0}
        )
        _settle(ws)
    with _agent(app_client, wid, "intruder") as other:
        other.send_json({"type": "task.finished", "taskId": task_id, "status": "completed"})
        _settle(other)
    done = _get(app_client, wid, task_id)
    assert (done["status"], done["exitCode"]) == ("failed", 1)


def test_write_mode_needs_admin_and_both_flags(make_client):
    """R17: write mode needs admin+, the relay flag and the agent flag."""
    with make_client(features={"codexExecWrite": True}) as client:
        login(client)
        wid = _wid(client)
        with _agent(client, wid, write=False):
            res = _submit(client, wid, type="codex_exec", prompt="x", writeAccess=True)
            assert (res.status_code, res.json()["error"]) == (403, "write-mode-disabled")
            assert "agent" in res.json()["message"]
        with _agent(client, wid, "writer", write=True) as ws:
            res = client.post(
                f"/api/v1/workspaces/{wid}/tasks",
                json={
                    "agentId": "writer",
                    "type": "codex_exec",
                    "prompt": "x",
                    "writeAccess": True,
                },
            )
            assert res.status_code == 201
            assert ws.receive_json()["task"]["writeAccess"] is True
            sign_in_with_role(client, wid, Role.MEMBER)
            res = client.post(
                f"/api/v1/workspaces/{wid}/tasks",
                json={
                    "agentId": "writer",
                    "type": "codex_exec",
                    "prompt": "x",
                    "writeAccess": True,
                },
            )
            assert (res.status_code, res.json()["error"]) == (403, "forbidden")


def test_relay_write_flag_off_by_default(app_client):
    """R17: with the relay flag off, even an admin with a willing agent is refused."""
    login(app_client)
    wid = _wid(app_client)
    with _agent(app_client, wid, write=True):
        res = _submit(app_client, wid, type="codex_exec", prompt="x", writeAccess=True)
        assert (res.status_code, res.json()["error"]) == (403, "write-mode-disabled")
        assert "relay" in res.json()["message"]


@pytest.mark.parametrize(
    ("flag", "body"),
    [
        ("codexExec", {"type": "codex_exec", "prompt": "x"}),
        ("runAction", {"type": "run_action", "actionId": "tests"}),
        ("readLog", {"type": "read_log", "logSourceId": "app"}),
    ],
)
def test_relay_feature_flags(make_client, flag, body):
    """R09: each relay flag turns its task type off."""
    with make_client(features={flag: False}) as client:
        login(client)
        wid = _wid(client)
        with _agent(client, wid):
            res = _submit(client, wid, **body)
            assert (res.status_code, res.json()["error"]) == (403, "feature-disabled")


def test_agent_feature_flags(app_client):
    """R09: a type the agent does not advertise is refused on the relay too."""
    login(app_client)
    wid = _wid(app_client)
    token = _paired_token(app_client, wid)
    with app_client.websocket_connect(
        "/api/v1/agent/connect", headers={"Authorization": f"Bearer {token}"}
    ) as ws:
        ws.send_json(_hello(features={"codexExec": False, "runAction": True}))
        ws.receive_json()
        res = _submit(app_client, wid, type="codex_exec", prompt="x")
        assert (res.status_code, res.json()["error"]) == (403, "feature-disabled")
        assert "agent" in res.json()["message"]


def test_viewer_cannot_submit_and_member_cancels_only_own(app_client):
    """Viewers read only; members cancel their own tasks; admins cancel any."""
    login(app_client)
    wid = _wid(app_client)
    with _agent(app_client, wid) as ws:
        owner_task = _submit(app_client, wid, type="run_action", actionId="tests").json()["task"]
        ws.receive_json()
        sign_in_with_role(app_client, wid, Role.VIEWER)
        res = _submit(app_client, wid, type="run_action", actionId="tests")
        assert (res.status_code, res.json()["error"]) == (403, "forbidden")
        assert _get(app_client, wid, owner_task["id"])["id"] == owner_task["id"]
        member_id = sign_in_with_role(app_client, wid, Role.MEMBER)
        res = app_client.post(f"/api/v1/workspaces/{wid}/tasks/{owner_task['id']}/cancel")
        assert (res.status_code, res.json()["error"]) == (403, "forbidden")
        assert _get(app_client, wid, owner_task["id"])["cancelledBy"] is None
        mine = _submit(app_client, wid, type="run_action", actionId="tests").json()["task"]
        ws.receive_json()
        res = app_client.post(f"/api/v1/workspaces/{wid}/tasks/{mine['id']}/cancel")
        assert res.status_code == 200
        assert res.json()["task"]["cancelledBy"] == member_id
        assert ws.receive_json() == {"type": "task.cancel", "taskId": mine["id"]}


def test_details_expire_after_ttl(make_client, clock):
    """R10: texts are held for taskDetailsTtlSec after finishing, then detailsExpired."""
    with make_client(taskDetailsTtlSec=60) as client:
        login(client)
        wid = _wid(client)
        with _agent(client, wid) as ws:
            task_id = _submit(client, wid, type="codex_exec", prompt="p").json()["task"]["id"]
            ws.receive_json()
            ws.send_json(
                {
                    "type": "task.finished",
                    "taskId": task_id,
                    "status": "completed",
                    "finalMessage": "m",
                }
            )
            _settle(ws)
        assert _get(client, wid, task_id)["finalMessage"] == "m"
        clock.advance(61)
        expired = _get(client, wid, task_id)
        assert expired["detailsExpired"] is True
        assert expired["finalMessage"] is None
        assert expired["status"] == "completed"


def test_task_history_pruned_per_workspace(make_client, clock):
    """Only the newest maxTasksPerWorkspace tasks are kept; running ones never go."""
    with make_client(maxTasksPerWorkspace=10) as client:
        login(client)
        wid = _wid(client)
        with _agent(client, wid) as ws:
            for _ in range(15):
                clock.advance(1)
                task_id = _submit(client, wid, type="run_action", actionId="tests").json()["task"][
                    "id"
                ]
                ws.receive_json()
                ws.send_json({"type": "task.finished", "taskId": task_id, "status": "completed"})
            _settle(ws)
        listed = client.get(f"/api/v1/workspaces/{wid}/tasks").json()["tasks"]
        assert len(listed) == 10
        assert listed[0]["id"] == task_id


def test_diff_capped_on_relay(app_client):
    """R18: a diff larger than the relay's cap is cut and flagged truncated."""
    login(app_client)
    wid = _wid(app_client)
    with _agent(app_client, wid) as ws:
        task_id = _submit(app_client, wid, type="codex_exec", prompt="p").json()["task"]["id"]
        ws.receive_json()
        ws.send_json(
            {
                "type": "task.finished",
                "taskId": task_id,
                "status": "completed",
                "diffText": "+x\n" * 200000,
            }
        )
        _settle(ws)
    done = _get(app_client, wid, task_id)
    assert done["diffTruncated"] is True
    assert len(done["diffText"]) <= 512 * 1024


def test_details_store_memory_cap_evicts_oldest_finished(clock):
    """R10: over the cap, the oldest finished task's details go first."""
    store = DetailsStore(ttl_sec=3600, max_bytes=1000)
    store.start("a", "x" * 400)
    store.finish("a", clock())
    store.start("b", "y" * 400)
    store.finish("b", clock())
    store.start("c", "z" * 400)
    assert store.get("a", clock()) is None
    assert store.get("b", clock()) is not None
    assert store.get("c", clock()) is not None
    assert store.total <= 1000
