"""The run-once ledger's group commit: ids that arrive together share one fsync, and a task
is reported accepted and run only once its own id is durable (B4)."""

from __future__ import annotations

import asyncio
import threading

from codexrelay.agent.ledger import LEDGER_FILE, TaskLedger
from codexrelay.protocol import TaskAccepted, TaskStarted
from tests.unit.test_agent_executor import action, make


async def test_ids_reserved_together_share_one_write_and_all_reach_the_disk(tmp_path, monkeypatch):
    state = tmp_path / "state"
    ledger = TaskLedger.open(state)
    writes: list[bytes] = []
    real = ledger._write

    def counting(data: bytes, *, sync: bool = True) -> None:
        writes.append(data)
        real(data, sync=sync)

    monkeypatch.setattr(ledger, "_write", counting)
    waiters = [ledger.reserve(f"t{i}") for i in range(50)]
    assert ledger.reserve("t3") is None  # a repeat is refused at once, before any write
    assert "t49" in ledger
    await asyncio.gather(*[w for w in waiters if w is not None])
    assert len(writes) == 1  # one write and one fsync for the fifty
    reopened = TaskLedger.open(state)
    assert all(f"t{i}" in reopened for i in range(50))


async def test_a_failed_write_fails_every_id_in_it(tmp_path):
    state = tmp_path / "state"
    ledger = TaskLedger.open(state)
    (state / LEDGER_FILE).unlink()
    (state / LEDGER_FILE).mkdir()  # appending now fails like a broken disk would
    waiters = [ledger.reserve("a"), ledger.reserve("b")]
    results = await asyncio.gather(*[w for w in waiters if w is not None], return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)
    assert ledger.reserve("a") is None  # still never run twice


async def test_a_task_waits_for_its_id_to_be_durable_before_it_is_accepted_or_runs(tmp_path):
    executor, outbox = make(tmp_path)
    release, entered = threading.Event(), threading.Event()
    real = executor.ledger._write

    def held(data: bytes, *, sync: bool = True) -> None:
        entered.set()
        assert release.wait(10)
        real(data, sync=sync)

    executor.ledger._write = held  # type: ignore[method-assign]
    accepted = await executor.take(action("slow"))
    await asyncio.to_thread(entered.wait, 10)
    await asyncio.sleep(0.1)  # time enough to start, were it not waiting for the disk
    assert not accepted.done()
    assert outbox.of("slow") == []  # neither accepted nor started
    assert executor.running_ids() == ["slow"]  # but held: a cancel or a repeat finds it
    release.set()
    assert await accepted is True
    await executor.join()
    kinds = [type(m) for m in outbox.of("slow")]
    assert kinds[:2] == [TaskAccepted, TaskStarted]
    assert outbox.finished("slow").status == "completed"
    assert "slow" in TaskLedger.open(tmp_path / "state")


async def test_a_task_cancelled_while_its_id_is_written_never_runs(tmp_path):
    executor, outbox = make(tmp_path)
    release = threading.Event()
    real = executor.ledger._write

    def held(data: bytes, *, sync: bool = True) -> None:
        assert release.wait(10)
        real(data, sync=sync)

    executor.ledger._write = held  # type: ignore[method-assign]
    accepted = await executor.take(action("stop"))
    assert executor.cancel("stop") is True
    release.set()
    assert await accepted is True
    await executor.join()
    assert outbox.finished("stop").status == "cancelled"
    assert not any(isinstance(m, TaskStarted) for m in outbox.of("stop"))
