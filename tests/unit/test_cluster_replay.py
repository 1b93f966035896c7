"""What a phone's event stream replays when it resumes on a cluster instance: everything
it may have missed, and never a task's older state after a newer one it has seen."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any, cast

from codexrelay.relay.cluster.routing import REPLAY_MARGIN_MS, ClusterEvents
from codexrelay.relay.events import Event


def _bus() -> ClusterEvents:
    cluster = SimpleNamespace(store=SimpleNamespace(caught_up_ms=0), links=None)
    return ClusterEvents(cast(Any, cluster))


def _task(at_ms: int, n: int, task_id: str, status: str) -> Event:
    data = json.dumps({"task": {"id": task_id, "status": status}})
    return Event(id=f"{at_ms:x}-boot-{n}", type="task", data=data)


def _progress(at_ms: int, n: int, task_id: str) -> Event:
    return Event(id=f"{at_ms:x}-peer-{n}", type="progress", data=json.dumps({"taskId": task_id}))


def test_a_task_seen_completed_is_not_replayed_as_running() -> None:
    bus = _bus()
    running = _task(1_000_000, 1, "tsk_a", "running")
    completed = _task(1_000_010, 2, "tsk_a", "completed")
    for event in (running, completed):
        bus.deliver("ws", event)
    assert bus.missed("ws", completed.id) == []


def test_the_newest_state_of_each_task_in_the_window_is_replayed_in_order() -> None:
    bus = _bus()
    events = [
        _task(1_000_000, 1, "tsk_a", "dispatched"),
        _task(1_000_001, 2, "tsk_b", "dispatched"),
        _progress(1_000_002, 3, "tsk_a"),
        _task(1_000_003, 4, "tsk_a", "running"),
        _task(1_000_004, 5, "tsk_b", "completed"),
        _task(1_000_005, 6, "tsk_a", "completed"),
    ]
    for event in events:
        bus.deliver("ws", event)
    replay = bus.missed("ws", events[1].id)
    assert [e.id for e in replay] == [events[2].id, events[4].id, events[5].id]


def test_events_older_than_the_margin_are_not_replayed() -> None:
    bus = _bus()
    old = _task(1_000_000, 1, "tsk_a", "completed")
    seen = _task(1_000_000 + REPLAY_MARGIN_MS + 1, 2, "tsk_b", "running")
    late_peer = _progress(1_000_000 + REPLAY_MARGIN_MS, 3, "tsk_b")
    for event in (old, seen, late_peer):
        bus.deliver("ws", event)
    assert [e.id for e in bus.missed("ws", seen.id)] == [late_peer.id]


def test_an_id_without_a_time_gets_each_tasks_latest_state() -> None:
    bus = _bus()
    events = [_task(1_000_000, 1, "tsk_a", "running"), _task(1_000_001, 2, "tsk_a", "failed")]
    for event in events:
        bus.deliver("ws", event)
    assert [e.id for e in bus.missed("ws", "boot-7")] == [events[1].id]
    assert bus.missed("ws", None) == []
