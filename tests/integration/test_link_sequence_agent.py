"""B4 at the agent: it numbers everything it sends, and a relay message out of sequence
resets the connection (close 4412) before it is acted on."""

from __future__ import annotations

import asyncio
import json

import pytest

from codexrelay.protocol import CLOSE_SEQUENCE
from tests.integration.test_agent_refusals import fake_world  # noqa: F401 - fixture

pytestmark = pytest.mark.asyncio


async def _until(relay, predicate, limit: float = 15) -> None:
    async def wait() -> None:
        while not predicate():
            relay.new_message.clear()
            await relay.new_message.wait()

    await asyncio.wait_for(wait(), limit)


async def test_agent_numbers_its_messages(fake_world):  # noqa: F811
    """hello is 1; every later message takes the next number."""
    relay, _ = fake_world
    assert relay.hello["linkSeq"] == 1
    await relay.send_task(id="numbered-1", type="run_action", actionId="hello")
    await relay.outcome("numbered-1")
    numbers = [m["linkSeq"] for m in relay.received]
    assert numbers == list(range(2, 2 + len(numbers)))


@pytest.mark.parametrize("skip", [1, -1], ids=["gap", "repeat"])
async def test_a_relay_message_out_of_sequence_resets_the_link(fake_world, skip):  # noqa: F811
    """A task with a skipped or repeated number is not run: the agent closes with 4412 and
    comes back with a fresh hello."""
    relay, tmp_path = fake_world
    relay.sent += skip
    await relay.send_task(id="out-of-order", type="run_action", actionId="hello")
    await _until(relay, lambda: CLOSE_SEQUENCE in relay.closes)
    await _until(relay, lambda: relay.connections >= 2)
    assert relay.hello["linkSeq"] == 1
    assert not [m for m in relay.received if m.get("taskId") == "out-of-order"]
    ledger = (tmp_path / "state" / "task-ledger.jsonl").read_text()
    assert "out-of-order" not in ledger
    assert json.dumps("out-of-order") not in ledger
