"""Relay task transitions (B4): forward only, with one authoritative correction."""

from __future__ import annotations

from codexrelay.relay.storage.records import TaskRecord
from codexrelay.relay.tasks import lifecycle
from tests.helpers import FakeClock


def _task(status: str, reason: str | None = None) -> TaskRecord:
    now = FakeClock()()
    return TaskRecord(
        id="t",
        workspace_id="w",
        agent_id="a",
        agent_key="k",
        type="run_action",
        status=status,
        created_by="u",
        created_at=now,
        updated_at=now,
        reason=reason,
    )


def test_finished_task_never_moves_again():
    """A terminal task ignores every later report."""
    clock = FakeClock()
    for status in ("completed", "failed", "cancelled", "rejected"):
        task = _task(status)
        for later in ("running", "completed", "failed", "dispatched"):
            assert not lifecycle.settle_final_report(task, later, now=clock())
        assert task.status == status


def test_relay_restart_interruption_is_final():
    """Tasks interrupted by a relay restart stay interrupted."""
    task = _task("interrupted", "relay-restarted")
    assert not lifecycle.settle_final_report(task, "completed", now=FakeClock()())
    assert task.status == "interrupted"


def test_vanished_agent_late_report_corrects_interruption():
    """An agent back after the grace period reports what really happened."""
    task = _task("interrupted", lifecycle.AGENT_VANISHED)
    assert not lifecycle.settle_final_report(task, "running", now=FakeClock()())
    assert lifecycle.settle_final_report(task, "completed", now=FakeClock()())
    assert task.status == "completed"
    assert task.reason is None
    assert not lifecycle.settle_final_report(task, "failed", now=FakeClock()())


def test_forward_moves():
    """dispatched -> running -> completed is accepted; running -> dispatched is not."""
    clock = FakeClock()
    task = _task("dispatched")
    assert lifecycle.advance(task, "running", now=clock())
    assert not lifecycle.advance(task, "dispatched", now=clock())
    assert lifecycle.advance(task, "completed", now=clock())
    assert task.finished_at is not None
