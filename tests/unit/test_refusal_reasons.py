"""Agent refusal reasons are one enum, and the phone has a sentence for each reason and a
word for each task status."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from codexrelay.protocol import ProtocolError, RefusalReason, parse_agent_message
from codexrelay.relay.storage.records import TERMINAL_STATUSES, TaskStatus

FORMAT_JS = Path(__file__).resolve().parents[2] / "src/codexrelay/web/js/format.js"


def test_every_refusal_reason_has_a_sentence_on_the_phone():
    """A refusal never reaches a person as a bare code."""
    sentences = set(re.findall(r'^\s*"([a-z0-9-]+)": "', FORMAT_JS.read_text(), re.M))
    missing = [reason.value for reason in RefusalReason if reason.value not in sentences]
    assert not missing, f"add these to REASONS in web/js/format.js: {missing}"


def test_a_reason_outside_the_enum_is_refused():
    """The relay reads only the known codes from an agent."""
    good = '{"type":"task.rejected","taskId":"t1","reason":"cwd-not-found"}'
    assert parse_agent_message(good).reason is RefusalReason.CWD_NOT_FOUND  # type: ignore[attr-defined]
    with pytest.raises(ProtocolError):
        parse_agent_message('{"type":"task.rejected","taskId":"t1","reason":"made-up"}')


def test_every_task_status_has_a_word_on_the_phone():
    """A status the relay can report is never shown as a bare code; terminal ones are
    known as terminal to the app."""
    text = FORMAT_JS.read_text()
    words = set(re.findall(r"^\s*([a-z]+): \"", text, re.M))
    assert [s for s in get_args(TaskStatus) if s not in words] == []
    terminal = set(
        re.findall(r'"([a-z]+)"', text.split("export const TERMINAL", 1)[1].split(";")[0])
    )
    assert terminal == set(TERMINAL_STATUSES)
