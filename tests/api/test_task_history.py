"""Task history over time: the list pages newest first, retention prunes finished tasks by age
in slices, and unfinished tasks never go (both storage backends)."""

from __future__ import annotations

from codexrelay.relay import app as relay_app
from tests.api.conftest import login, services_of
from tests.api.test_pairing_api import _wid
from tests.api.test_tasks_api import _agent, _settle, _submit
from tests.helpers import both_backends


def _run(client, ws, wid, n, clock, *, finish=True) -> list[str]:
    ids = []
    for _ in range(n):
        clock.advance(1)
        task_id = _submit(client, wid, type="run_action", actionId="tests").json()["task"]["id"]
        ws.receive_json()
        if finish:
            ws.send_json({"type": "task.finished", "taskId": task_id, "status": "completed"})
        ids.append(task_id)
    _settle(ws)
    return ids


@both_backends
def test_task_list_pages_newest_first(make_client, clock):
    """`limit` and `before` walk the whole history once, newest first; without them the list
    is every task, as before pages existed; an unknown cursor is a 404."""
    with make_client(maxTasksPerWorkspace=0) as client:
        login(client)
        wid = _wid(client)
        with _agent(client, wid) as ws:
            ids = _run(client, ws, wid, 12, clock)
        url = f"/api/v1/workspaces/{wid}/tasks"
        everything = client.get(url).json()
        assert [t["id"] for t in everything["tasks"]] == ids[::-1]
        assert everything["nextBefore"] is None
        walked, before = [], None
        while True:
            params = {"limit": 5} | ({"before": before} if before else {})
            page = client.get(url, params=params).json()
            walked += [t["id"] for t in page["tasks"]]
            before = page["nextBefore"]
            if before is None:
                break
        assert walked == ids[::-1]
        assert client.get(url, params={"before": "tsk_nope"}).status_code == 404
        assert client.get(url, params={"limit": 0}).status_code == 422


@both_backends
def test_retention_prunes_old_finished_tasks_in_slices(make_client, clock, monkeypatch):
    """Finished tasks older than storage.retentionDays go, a slice at a time with a commit
    between; newer ones and unfinished ones stay, and nothing comes back after a restart."""
    monkeypatch.setattr(relay_app, "RETENTION_SLICE", 4)
    with make_client(maxTasksPerWorkspace=0, storage={"retentionDays": 2}) as client:
        login(client)
        wid = _wid(client)
        services = services_of(client)
        with _agent(client, wid) as ws:
            old = _run(client, ws, wid, 10, clock)
            running = _run(client, ws, wid, 1, clock, finish=False)
            clock.advance(3 * 86400)
            fresh = _run(client, ws, wid, 3, clock)
            writes = services.store.writes
            pruned = client.portal.call(relay_app.run_retention, services)
            assert pruned == 10
            assert services.store.writes - writes >= 3  # 4 + 4 + 2: one commit per slice
            listed = [
                t["id"] for t in client.get(f"/api/v1/workspaces/{wid}/tasks").json()["tasks"]
            ]
            assert listed == (running + fresh)[::-1]
            assert not set(old) & set(listed)
            assert client.portal.call(relay_app.run_retention, services) == 0
        stored = client.setup.stored_state()
    assert not set(old) & set(stored.tasks)
    assert set(fresh) <= set(stored.tasks)
