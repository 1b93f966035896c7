"""Re-keying a running sealed task when a reader leaves the log (issue 19; TRUST.md §4.7):
the agent's ``OutputSealer`` switches to a fresh key wrapped to the remaining readers, and
``read_task`` follows both keys, chained, for those who hold them, while the reader who
left opens nothing sent after it left."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from codexrelay.agent.sealing import OutputSealer, TaskKeys, open_submit
from codexrelay.e2e.envelope import parse_wire
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.sealed import reader_wraps, task_keys
from tests.unit.e2e.test_sealed import AGENT, TASK, WS, Party, _reads, _spec, _submission


class Log:
    """The agent's verified view, as it changes while the task runs."""

    def __init__(self, view: LogView | None) -> None:
        self.view = view

    def __call__(self) -> LogView | None:
        return self.view

    def revoke(self, device: str) -> None:
        assert self.view is not None
        gone = dataclasses.replace(self.view.devices[device], revoked_seq=2)
        self.view = dataclasses.replace(self.view, devices={**self.view.devices, device: gone})

    def remove(self, device: str) -> None:
        assert self.view is not None
        user = self.view.devices[device].user_id
        members = {k: v for k, v in self.view.members.items() if k != user}
        self.view = dataclasses.replace(self.view, members=members)


def _run(p: Party, log: Log, leave: str, how: str = "revoke") -> tuple[list[bytes], OutputSealer]:
    """Submission, two steps, ``leave`` leaves the log, two more steps and a final text."""
    submit, key = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    sealer = OutputSealer(
        opened, ws=WS, agent_id=AGENT, signing=p.agent_sig,
        wraps=reader_wraps(p.view, key, ws=WS, task=TASK), view=log,
    )  # fmt: skip
    items = [submit]
    items += [sealer.out({"progress": {"seq": i, "text": f"before {i}"}}).encode() for i in (1, 2)]
    getattr(log, how)(leave)
    items += [sealer.out({"progress": {"seq": i, "text": f"after {i}"}}).encode() for i in (3, 4)]
    items.append(sealer.out({"text": {"field": "finalMessage", "chunk": "secret end"}}).encode())
    items.append(sealer.done({"status": "completed", "exitCode": 0}).encode())
    return items, sealer


def _texts(shown: object) -> str:
    return json.dumps([shown.progress, shown.texts])  # type: ignore[attr-defined]


def test_a_revoked_reader_reads_what_came_before_and_nothing_after() -> None:
    p = Party()
    items, sealer = _run(p, Log(p.view), "dv_2")
    assert len({parse_wire(i)[1].epoch for i in items[1:]}) == 2
    assert len(sealer.fresh_keys) == 1
    assert sealer.task_key == sealer.fresh_keys[0]
    later = [w.to for i in items[3:] for w in parse_wire(i)[0].keys or ()]
    assert later == ["dv_1"]
    stays = _reads(p, "dv_1", items)
    assert stays.complete, stays.dropped
    assert (stays.epochs, stays.dropped) == (2, [])
    assert "after 4" in _texts(stays)
    assert stays.texts["finalMessage"] == "secret end"
    gone = _reads(p, "dv_2", items)
    assert len(task_keys(items, p.kex["dv_2"], me="dv_2", ws=WS, task=TASK)) == 1
    assert "before 2" in _texts(gone)
    assert "after" not in _texts(gone)
    assert "secret" not in _texts(gone)
    assert not gone.complete
    assert gone.done is None
    assert len(gone.dropped) == 4


def test_a_removed_member_is_treated_like_a_revoked_device() -> None:
    p = Party()
    items, _ = _run(p, Log(p.view), "dv_2", how="remove")
    assert "after" not in _texts(_reads(p, "dv_2", items))
    assert _reads(p, "dv_1", items).complete


def test_nobody_leaving_keeps_one_key() -> None:
    p = Party()
    log = Log(p.view)
    log.revoke = lambda device: None  # type: ignore[method-assign]
    items, sealer = _run(p, log, "dv_2")
    assert sealer.fresh_keys == []
    assert len({parse_wire(i)[1].epoch for i in items[1:]}) == 1
    assert _reads(p, "dv_2", items).complete


def test_the_submitting_device_leaving_before_any_output_re_keys_at_once() -> None:
    """dv_1 sealed the submission, so it holds the first key: revoked before the agent said
    anything, every output goes under a new key (no ``after``: nothing came before)."""
    p = Party()
    log = Log(p.view)
    submit, key = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    sealer = OutputSealer(
        opened, ws=WS, agent_id=AGENT, signing=p.agent_sig,
        wraps=reader_wraps(p.view, key, ws=WS, task=TASK), view=log,
    )  # fmt: skip
    log.revoke("dv_1")
    items = [submit, sealer.out({"progress": {"seq": 1, "text": "after"}}).encode()]
    items.append(sealer.done({"status": "completed"}).encode())
    assert sealer.task_key != key
    # The first key (it opens the submission) and the new one, both to dv_2 only.
    assert [w.to for w in parse_wire(items[1])[0].keys or ()] == ["dv_2", "dv_2"]
    shown = _reads(p, "dv_2", items)
    assert shown.complete
    assert shown.prompt == "hi"
    assert "after" not in _texts(_reads(p, "dv_1", items))


def test_a_device_the_submission_wrapped_to_counts_as_holding_the_key() -> None:
    """The phone wrapped the first key to dv_2 itself; the agent wrapped nothing to it. Its
    revocation still re-keys the task."""
    p = Party()
    log = Log(p.view)
    submit, key = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    assert opened.wrapped == {"dv_1"}
    opened = dataclasses.replace(opened, wrapped=frozenset({"dv_1", "dv_2"}))
    dv_1 = reader_wraps(p.view, key, ws=WS, task=TASK)[:1]
    sealer = OutputSealer(opened, ws=WS, agent_id=AGENT, signing=p.agent_sig, wraps=dv_1, view=log)
    first = sealer.out({"progress": {"seq": 1, "text": "before"}})
    log.revoke("dv_2")
    sealer.out({"progress": {"seq": 2, "text": "after"}})
    assert sealer.task_key != key
    assert len(sealer.fresh_keys) == 1
    assert [w.to for w in parse_wire(first.encode())[0].keys or ()] == ["dv_1"]


def test_a_holder_the_agents_log_does_not_know_yet_is_no_leaver() -> None:
    p = Party()
    submit, _ = _submission(p)
    opened = open_submit(_spec(submit), ws=WS, agent_id=AGENT, kex=p.agent_kex)
    opened = dataclasses.replace(opened, wrapped=frozenset({"dv_1", "dv_new"}))
    sealer = OutputSealer(opened, ws=WS, agent_id=AGENT, signing=p.agent_sig, wraps=[],
                          view=Log(p.view))  # fmt: skip
    sealer.out({"progress": {"seq": 1, "text": "x"}})
    assert sealer.fresh_keys == []


def test_an_unusable_view_wraps_the_rest_to_no_one() -> None:
    p = Party()
    log = Log(p.view)
    log.revoke = lambda device: setattr(log, "view", None)  # type: ignore[method-assign]
    items, sealer = _run(p, log, "dv_2")
    assert len(sealer.fresh_keys) == 1
    assert all(parse_wire(i)[0].keys is None for i in items[3:])
    for device in ("dv_1", "dv_2"):
        shown = _reads(p, device, items)
        assert "after" not in _texts(shown)
        assert not shown.complete


def test_a_relay_cannot_splice_the_two_keys_streams() -> None:
    p = Party()
    items, _ = _run(p, Log(p.view), "dv_2")
    cut = [*items[:2], *items[3:]]  # the last output under the first key withheld
    shown = _reads(p, "dv_1", cut)
    assert not shown.complete
    assert "after" not in _texts(shown)
    swapped = [items[0], *items[3:], *items[1:3]]  # the second key's output served first
    assert not _reads(p, "dv_1", swapped).complete


def test_kept_keys_of_a_re_keyed_task_come_back_oldest_first(tmp_path: Path) -> None:
    kept = TaskKeys(tmp_path, keep_days=7)
    kept.keep(WS, TASK, b"a" * 32)
    kept.keep(WS, TASK, b"b" * 32, after=True)
    kept.keep(WS, TASK, b"c" * 32, after=True)
    assert kept.get_all(WS, TASK) == [b"a" * 32, b"b" * 32, b"c" * 32]
    assert kept.get(WS, TASK) == b"c" * 32
    again = TaskKeys(tmp_path, keep_days=7)  # read back from the file
    assert again.get_all(WS, TASK) == [b"a" * 32, b"b" * 32, b"c" * 32]
    again.keep(WS, TASK, b"d" * 32)  # a thread's key change keeps only the newest
    assert again.get_all(WS, TASK) == [b"d" * 32]
    assert again.get_all("ws_other", TASK) == []
