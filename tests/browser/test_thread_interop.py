"""A phone opens a sealed conversation (web/js/sealing/threads.js) exactly as the Python
reference reader does (TRUST.md §4.7, §4.8, §5): Chromium makes its device keys, the Python
side certifies them in a log it signs, an agent in Python seals a thread's stream (state,
items, streamed text, an approval request, a key change) under its signing key, and the
browser, verifying the log itself, decrypts every canary with its non-extractable key. A
flipped bit is dropped and counted, never shown, and after a key change that left the
device out the browser opens nothing new."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from playwright.sync_api import Page

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import Sealer, new_task_key
from codexrelay.e2e.sealed import reader_wraps, seal_record
from codexrelay.e2e.sealedthreads import read_thread
from codexrelay.e2e.wire import b64u, b64u_decode
from tests.browser import test_e2e_interop as interop
from tests.proof.test_leak_canaries import canary
from tests.unit.e2e.logkit import LogKit, agent_body

origin = interop.origin
page = interop.page

pytestmark = pytest.mark.browser

KEYS = """async () => {
  const K = await import("/e2e/keys.js");
  window.__device = await K.generateDeviceKeys();
  return await K.publicKeys(window.__device);
}"""

READ = """async (arg) => {
  const log = await import("/e2e/log.js");
  const threads = await import("/js/sealing/threads.js");
  const view = await log.verifyLog(arg.entries, { pinned: arg.pinned });
  const device = window.__device;
  const envelopes = arg.envelopes.map((e) => new TextEncoder().encode(e));
  try {
    return await threads.readThread(envelopes, {
      kexKey: device.kex, suite: device.suite, me: "dv_browser", view, agent: "ag_1",
      thread: arg.thread,
    });
  } catch (err) {
    return { error: err.reason || err.message };
  }
}"""


class Thread:
    """A log with the browser's device as a reader, and an agent in Python sealing a thread."""

    def __init__(self, public: dict[str, str]) -> None:
        self.kit = LogKit()
        vic = self.kit.member("u_vic", "viewer")
        device = {"userId": "u_vic", "deviceId": "dv_browser", "label": "Chromium", **public}
        self.kit.add("device.add", device, vic)
        self.py_kex = keys.generate_kex_key("c25519")  # a second device, read in Python
        second = {
            "userId": "u_vic",
            "deviceId": "dv_py",
            "label": "Python",
            "sigPub": keys.public_text(keys.generate_signing_key("c25519")),
            "kexPub": keys.public_text(self.py_kex),
            "suite": "c25519",
        }
        self.kit.add("device.add", second, vic)
        body, self.agent_key = agent_body("ag_1")
        self.kit.add("agent.add", body, self.kit.owner)
        self.id = str(uuid.uuid4())
        self.c = {k: canary(k) for k in ("prompt", "reply", "output", "approval")}
        self.envelopes: list[bytes] = []

    def sealer(self) -> Sealer:
        key = new_task_key()
        view = self.kit.view()
        self.wraps = reader_wraps(view, key, ws=view.ws, task=self.id)
        return Sealer(key, view.ws, "ag_1", self.id, "ag_1", self.agent_key)

    def seal(self, sealer: Sealer, kind: Any, record: dict[str, Any]) -> None:
        wraps, self.wraps = self.wraps, []
        self.envelopes.append(seal_record(sealer, kind, record, wraps))

    def conversation(self) -> None:
        c, tid = self.c, self.id
        sealer = self.sealer()
        info = {
            "id": tid,
            "source": "phone",
            "status": "running",
            "cwd": "/w",
            "preview": c["prompt"],
        }
        self.seal(sealer, "task.out", {"thread": info, "turn": {"id": "t1", "threadId": tid,
                                                              "status": "inProgress"}})  # fmt: skip
        user = {"id": "i1", "turnId": "t1", "seq": 1, "type": "userMessage", "text": c["prompt"]}
        self.seal(sealer, "task.out", {"item": user})
        reply = {"id": "i2", "turnId": "t1", "seq": 2, "type": "agentMessage", "text": "Hi "}
        self.seal(sealer, "task.out", {"item": reply})
        delta = {"threadId": tid, "itemId": "i2", "seq": 3, "field": "text", "delta": c["reply"]}
        self.seal(sealer, "task.out", {"delta": delta})
        cell = {"id": "i3", "seq": 4, "type": "commandExecution", "output": c["output"]}
        self.seal(sealer, "task.out", {"item": cell})
        approval = {"id": "apr_1", "threadId": tid, "kind": "command", "status": "pending",
                    "command": f"echo {c['approval']}"}  # fmt: skip
        self.seal(sealer, "approval.req", {"approval": approval})

    def read(self, page: Page, envelopes: list[bytes]) -> dict[str, Any]:
        arg = {
            "entries": self.kit.signed,
            "pinned": self.kit.genesis_hash,
            "thread": self.id,
            "envelopes": [e.decode("ascii") for e in envelopes],
        }
        shown: dict[str, Any] = page.evaluate(READ, arg)
        return shown


def _flip(envelope: bytes) -> bytes:
    wire = json.loads(envelope)
    ct = bytearray(b64u_decode(wire["ct"], max_bytes=1 << 21))
    ct[5] ^= 0x01
    return json.dumps({**wire, "ct": b64u(bytes(ct))}).encode()


def test_the_browser_opens_a_sealed_thread_like_the_reference_reader(page: Page) -> None:
    thread = Thread(page.evaluate(KEYS))
    thread.conversation()
    shown = thread.read(page, thread.envelopes)
    assert shown["dropped"] == [], shown
    assert shown["opened"] == len(thread.envelopes)
    text = json.dumps(shown)
    assert [k for k, v in thread.c.items() if v not in text] == []
    assert shown["items"]["i2"]["text"] == "Hi " + thread.c["reply"]
    assert shown["items"]["i2"]["seq"] == 3
    assert shown["approvals"]["apr_1"]["command"] == f"echo {thread.c['approval']}"
    python = read_thread(
        thread.envelopes,
        thread.py_kex,
        me="dv_py",
        view=thread.kit.view(),
        agent="ag_1",
        thread=thread.id,
    )
    assert python.dropped == []
    assert (python.items, python.approvals) == (shown["items"], shown["approvals"])


def test_a_flipped_bit_is_dropped_and_a_key_change_leaves_a_removed_device_out(
    page: Page,
) -> None:
    thread = Thread(page.evaluate(KEYS))
    thread.conversation()
    flipped = [*thread.envelopes[:3], _flip(thread.envelopes[3]), *thread.envelopes[4:]]
    shown = thread.read(page, flipped)
    assert shown["opened"] == 3
    assert shown["dropped"][0] == "bad-signature"  # the agent signed the ciphertext
    assert thread.c["reply"] not in json.dumps(shown)
    # The device is revoked; the agent moves the thread to a new key wrapped to the rest.
    thread.kit.add("device.revoke", {"userId": "u_vic", "deviceId": "dv_browser"}, thread.kit.owner)
    secret = canary("afterrevoke")
    sealer = thread.sealer()
    assert "dv_browser" not in [w.to for w in thread.wraps]
    thread.seal(sealer, "task.out", {"item": {"id": "i9", "seq": 9, "type": "agentMessage",
                                              "text": secret}})  # fmt: skip
    after = thread.read(page, thread.envelopes)
    assert after["opened"] == len(thread.envelopes) - 1
    assert secret not in json.dumps(after)
