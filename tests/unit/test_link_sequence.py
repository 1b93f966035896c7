"""B4 on the agent socket: per-connection numbers catch gaps, repeats and reordering."""

from __future__ import annotations

import json

import pytest

from codexrelay.protocol import (
    LinkCounter,
    ProtocolError,
    SequenceError,
    TaskCancel,
    dump_message,
    parse_agent_frame,
    parse_relay_frame,
    parse_relay_message,
    read_seq,
)


def test_counter_takes_only_the_next_number():
    """1, 2, 3 pass; each kind of disorder is named."""
    counter = LinkCounter()
    for seq in (1, 2, 3):
        counter.accept(seq)
    cases = {5: "gap", 3: "repeat", 1: "reorder", None: "missing"}
    for seq, kind in cases.items():
        with pytest.raises(SequenceError) as exc:
            counter.accept(seq)
        assert exc.value.kind == kind
    assert counter.last == 3


def test_numbered_frames_round_trip_and_stay_out_of_the_models():
    """linkSeq rides beside the message: the typed model never holds it."""
    text = dump_message(TaskCancel(task_id="t1"), 7)
    assert json.loads(text)["linkSeq"] == 7
    frame = parse_relay_frame(text)
    assert frame.seq == 7
    assert frame.message == TaskCancel(task_id="t1")
    assert parse_relay_message(text) == TaskCancel(task_id="t1")
    assert parse_relay_frame(dump_message(TaskCancel(task_id="t1"))).seq is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1", None])
def test_a_malformed_number_is_refused(bad):
    """Only a positive integer is a number (a boolean or a float is not)."""
    raw = json.dumps({"linkSeq": bad, "type": "token.renew"})
    with pytest.raises(ProtocolError):
        parse_agent_frame(raw)
    assert read_seq(raw) is None


def test_a_message_that_does_not_parse_still_shows_its_number():
    """The receiver counts a message it cannot read, so one bad message is not a gap."""
    raw = json.dumps({"linkSeq": 4, "type": "task", "task": {"id": 1}})
    with pytest.raises(ProtocolError):
        parse_relay_frame(raw)
    assert read_seq(raw) == 4
