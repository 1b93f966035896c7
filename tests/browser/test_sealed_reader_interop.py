"""The phone's sealed-task reader (``web/js/sealing/read.js``) in Chromium, fed envelopes
made by the Python agent code: an honest stream is complete; a dropped, repeated,
reordered, truncated or forged one is caught and counted, never glued (TRUST.md §5, §10
item 5). And the base64url decoder every envelope goes through agrees with Python byte
for byte and refuses every non-canonical text."""

from __future__ import annotations

import dataclasses
import secrets
from typing import Any

import pytest
from playwright.sync_api import Page

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import Sealer, new_task_key, wrap_task_key
from codexrelay.e2e.logview import Device, Member
from codexrelay.e2e.sealed import seal_record, text_pieces
from codexrelay.e2e.wire import b64u
from tests.browser.test_e2e_interop import origin, page  # noqa: F401 - the harness fixtures
from tests.unit.e2e.test_sealed import AGENT, TASK, WS, Party
from tests.unit.e2e.test_sealed_rekey import Log, _run

pytestmark = pytest.mark.browser

SETUP = """async () => {
    const keys = await import('/e2e/keys.js');
    window.__device = { ...(await keys.generateDeviceKeys('c25519')), deviceId: 'dv_read' };
    return (await keys.publicKeys(window.__device)).kexPub;
}"""

READ = """async ([items, agentPub, ids]) => {
    const { SealedTask } = await import('/js/sealing/read.js');
    const view = { agents: new Map([[ids.agent, { suite: 'c25519', sigPub: agentPub }]]),
                   passkeys: new Map(), devices: new Map(), members: new Map() };
    const reader = new SealedTask({ wid: ids.ws, task: { id: ids.task, agentId: ids.agent },
                                    view, devices: [{ keys: window.__device, status: 'live' }] });
    reader.items = items;
    await reader.openAll();
    return { readable: reader.readable, complete: reader.complete, dropped: reader.dropped,
             counters: reader.counters, text: reader.texts.finalMessage || '',
             progress: reader.progress.map((p) => p.text) };
}"""

# The same, with the envelopes arriving one at a time as live events on an open page.
READ_LIVE = READ.replace(
    "reader.items = items;\n    await reader.openAll();",
    "for (const [index, envelope] of items.entries()) await reader.add(index, envelope);",
)
assert READ_LIVE != READ


def _stream(kex_pub: str, signing: keys.SigningKey) -> list[str]:
    """Three progress steps, a final message in two pieces, and task.done."""
    key = new_task_key()
    public = keys.load_kex_public("c25519", kex_pub)
    wrap = wrap_task_key(key, public, ws=WS, task=TASK, recipient_key_id="dv_read")
    sealer = Sealer(key, WS, AGENT, TASK, AGENT, signing)
    records: list[dict[str, Any]] = [
        {"progress": {"seq": i, "kind": "message", "text": f"step {i}"}} for i in range(3)
    ]
    records += text_pieces("finalMessage", "a" * 65536 + "the end")
    items = [
        seal_record(sealer, "task.out", r, [wrap] if i == 0 else []).decode()
        for i, r in enumerate(records)
    ]
    done = {"status": "completed", "exitCode": 0, "count": len(records), "chainHead": sealer.prev}
    return [*items, seal_record(sealer, "task.done", done).decode()]


def test_the_phone_reader_catches_every_cut_of_the_agents_stream(page: Page) -> None:  # noqa: F811
    signing = keys.generate_signing_key("c25519")
    stream = _stream(page.evaluate(SETUP), signing)
    ids = {"ws": WS, "task": TASK, "agent": AGENT}
    read = lambda items: page.evaluate(READ, [items, keys.public_text(signing), ids])  # noqa: E731
    honest = read(stream)
    assert (honest["readable"], honest["complete"], honest["dropped"]) == (True, True, [])
    assert honest["progress"] == ["step 0", "step 1", "step 2"]
    assert honest["text"].endswith("the end")
    assert len(honest["text"]) == 65536 + 7
    cases = {
        "dropped": [*stream[:1], *stream[2:]],
        "reordered": [stream[0], stream[2], stream[1], *stream[3:]],
        "truncated": stream[:-2],
        "the end cut off": stream[:-1],
    }
    for name, items in cases.items():
        shown = read(items)
        assert not shown["complete"], f"{name} output looked complete"
    dup = read([*stream[:2], *stream[1:]])
    assert dup["complete"], "a repeat is dropped; nothing is missing"
    assert (dup["dropped"], dup["counters"]["duplicates"]) == (["duplicate"], 1)
    assert dup["progress"] == honest["progress"]
    gap = read([*stream[:1], *stream[2:]])
    assert gap["counters"]["gaps"] == len(stream) - 2
    assert gap["progress"] == ["step 0"], "nothing after the hole is shown"
    forged = read(_stream(page.evaluate(SETUP), keys.generate_signing_key("c25519")))
    assert forged["dropped"] == ["bad-signature"] * len(stream)
    assert (forged["progress"], forged["text"]) == ([], "")


def test_base64url_decoding_matches_python_and_refuses_non_canonical_text(
    page: Page,  # noqa: F811
) -> None:
    samples = [secrets.token_bytes(n) for n in range(70)]
    texts = [b64u(s) for s in samples]
    decoded = page.evaluate(
        """async (texts) => {
            const S = await import('/e2e/statements.js');
            return texts.map((t) => Array.from(S.fromB64u(t)));
        }""",
        texts,
    )
    assert [bytes(d) for d in decoded] == samples
    bad = ["A", "AAAAA", "QQ==", "QR", "QUF", "Q+", "Q/", "Q Q", "QUJD=", "\u00e9A"]
    refused = page.evaluate(
        """async (texts) => {
            const S = await import('/e2e/statements.js');
            const refuses = (t) => { try { S.fromB64u(t); return false; } catch { return true; } };
            return texts.map(refuses);
        }""",
        bad,
    )
    assert refused == [True] * len(bad), dict(zip(bad, refused, strict=True))


def _rekeyed(kex_pub: str, leave: str) -> tuple[list[str], str]:
    """A stream from the agent's own ``OutputSealer``: two steps, ``leave`` is revoked, two
    more steps, a final message, done. The browser's device ``dv_read`` is a reader."""
    p = Party()
    device = Device("dv_read", "u_read", "phone", p.view.devices["dv_1"].sig_pub, kex_pub,
                    "c25519", 1)  # fmt: skip
    members = {**p.view.members, "u_read": Member("u_read", "Rea", "viewer", 1)}
    log = Log(dataclasses.replace(p.view, devices={**p.view.devices, "dv_read": device},
                                  members=members))  # fmt: skip
    p.view = log.view  # type: ignore[assignment]
    items, _ = _run(p, log, leave)
    return [i.decode() for i in items[1:]], keys.public_text(p.agent_sig)


def test_the_phone_reader_follows_a_re_keyed_task_and_a_revoked_phone_stops_reading(
    page: Page,  # noqa: F811
) -> None:
    """Another device is revoked mid-task: this phone reads both keys' output, complete.
    This phone's own device is revoked mid-task: it shows what came before, not one word
    after, and says the output is incomplete."""
    ids = {"ws": WS, "task": TASK, "agent": AGENT}
    kept, agent_pub = _rekeyed(page.evaluate(SETUP), "dv_2")
    stays = page.evaluate(READ, [kept, agent_pub, ids])
    assert (stays["readable"], stays["complete"], stays["dropped"]) == (True, True, [])
    assert stays["progress"] == ["before 1", "before 2", "after 3", "after 4"]
    assert stays["text"] == "secret end"
    live = page.evaluate(READ_LIVE, [kept, agent_pub, ids])
    assert live == stays, "envelopes arriving one by one read the same as a page load"
    cut = page.evaluate(READ, [[*kept[:1], *kept[2:]], agent_pub, ids])
    assert not cut["complete"], "the last output under the first key withheld"
    assert cut["progress"] == ["before 1"]
    stream, agent_pub = _rekeyed(page.evaluate(SETUP), "dv_read")
    gone = page.evaluate(READ, [stream, agent_pub, ids])
    assert (gone["readable"], gone["complete"]) == (True, False)
    assert gone["progress"] == ["before 1", "before 2"]
    assert gone["text"] == ""
    assert len(gone["dropped"]) == 4
