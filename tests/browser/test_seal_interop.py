"""The phone's sealing (web/js/sealing/send.js) opens in Python exactly as the agent opens
it (TRUST.md §4.5, §5): Chromium verifies a log the Python side signed, seals a statement
to the agent and to the live reader devices of that verified view, and the agent's own
``open_submit`` and a reader device in Python get the task back; the wrap list is exactly
Python's ``reader_devices()`` (no revoked device, no device of a removed member)."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import pytest
from playwright.sync_api import Page

from codexrelay.agent.runners.base import TaskRefusedError
from codexrelay.agent.sealing import open_submit
from codexrelay.e2e import keys
from codexrelay.e2e.sealed import find_task_key
from codexrelay.e2e.statements import digest
from codexrelay.e2e.wire import b64u
from codexrelay.protocol import TaskSpec
from codexrelay.protocol_sealed import SealedTask
from tests.browser import test_e2e_interop as interop
from tests.unit.e2e.logkit import LogKit, dumps

# The interop harness page: the product's modules under the product CSP.
origin = interop.origin
page = interop.page

pytestmark = pytest.mark.browser

SEAL = """async (arg) => {
  const log = await import("/e2e/log.js");
  const send = await import("/js/sealing/send.js");
  const S = await import("/e2e/statements.js");
  const view = await log.verifyLog(arg.entries, { pinned: arg.pinned });
  try {
    const { request, readers } = await send.sealSubmission(view, {
      stmt: arg.stmt, raw: S.fromB64u(arg.raw), body: S.fromB64u(arg.body), auth: arg.auth,
    });
    return { ok: true, request, readers, line: send.readersLine(view, "build-01") };
  } catch (err) {
    return { ok: false, message: err.message };
  }
}"""


class World:
    """A log with reader devices of every kind, and the private keys Python holds."""

    def __init__(self) -> None:
        self.kit = LogKit()
        kit = self.kit
        kit.member("u_ada", "member")
        vic = kit.member("u_vic", "viewer")
        self.vic_kex = keys.generate_kex_key("p256")
        kit.add(
            "device.add",
            {
                "userId": "u_vic",
                "deviceId": "dv_vic2",
                "label": "second phone",
                "sigPub": keys.public_text(keys.generate_signing_key("p256")),
                "kexPub": keys.public_text(self.vic_kex),
                "suite": "p256",
            },
            vic,
        )
        kit.member("u_bob", "member")
        kit.add("member.remove", {"userId": "u_bob"}, kit.owner)
        kit.add("device.revoke", {"userId": "u_ada", "deviceId": "dv_u_ada"}, kit.owner)
        self.agent_kex = keys.generate_kex_key("c25519")
        kit.add(
            "agent.add",
            {
                "agentId": "ag_1",
                "label": "build-01",
                "sigPub": keys.public_text(keys.generate_signing_key("c25519")),
                "kexPub": keys.public_text(self.agent_kex),
                "suite": "c25519",
                "pairingId": "pr_1",
            },
            kit.owner,
        )

    def statement(self, prompt: str, agent: str = "ag_1") -> tuple[dict[str, Any], bytes, bytes]:
        body = dumps({"prompt": prompt, "salt": b64u(secrets.token_bytes(16))})
        view = self.kit.view()
        now = int(time.time())
        stmt = {
            "v": 1,
            "kind": "task",
            "ws": self.kit.ws,
            "agent": agent,
            "task": str(uuid.uuid4()),
            "type": "codex_exec",
            "writeAccess": False,
            "cwd": None,
            "resumeSessionId": None,
            "actionId": None,
            "logSourceId": None,
            "bodyHash": digest(body),
            "device": "dv_owner",
            "logHead": {"seq": view.head.seq, "hash": view.head.hash},
            "issuedAt": now,
            "expiresAt": now + 600,
        }
        return stmt, dumps(stmt), body

    def seal(self, page: Page, stmt: dict[str, Any], raw: bytes, body: bytes) -> dict[str, Any]:
        arg = {
            "entries": self.kit.signed,
            "pinned": self.kit.genesis_hash,
            "stmt": stmt,
            "raw": b64u(raw),
            "body": b64u(body),
            "auth": [{"credentialId": self.kit.owner.cred_id, "assertion": {}}],
        }
        result: dict[str, Any] = page.evaluate(SEAL, arg)
        return result


def _spec(task_id: str, envelope: str) -> TaskSpec:
    return TaskSpec(id=task_id, type="codex_exec", sealed=SealedTask(envelope=envelope))


def test_a_sealed_submission_opens_for_the_agent_and_every_reader(page: Page) -> None:
    world = World()
    prompt = "Explain the build\nand its ünïcode"
    stmt, raw, body = world.statement(prompt)
    got = world.seal(page, stmt, raw, body)
    assert got["ok"], got
    readers = [d.device_id for d in world.kit.view().reader_devices()]
    assert readers == ["dv_owner", "dv_u_vic", "dv_vic2"], "live devices of members only"
    assert got["readers"] == ["ag_1", *readers]
    assert got["line"] == "Sealed: only build-01 and 3 devices can read it."
    request = got["request"]
    assert (request["agentId"], request["type"], request["writeAccess"]) == (
        "ag_1",
        "codex_exec",
        False,
    )
    assert prompt not in request["envelope"]
    envelope = request["envelope"]
    opened = open_submit(
        _spec(stmt["task"], envelope), ws=world.kit.ws, agent_id="ag_1", kex=world.agent_kex
    )
    assert opened.spec.prompt == prompt
    assert opened.device == "dv_owner"
    assert opened.spec.signed is not None
    assert opened.spec.signed.stmt == b64u(raw), "the exact signed bytes travel inside"
    reader_key = find_task_key(
        [envelope.encode()], world.vic_kex, me="dv_vic2", ws=world.kit.ws, task=stmt["task"]
    )
    assert reader_key == opened.task_key


def test_a_changed_byte_or_wrap_is_refused_by_the_agent(page: Page) -> None:
    world = World()
    stmt, raw, body = world.statement("Flip me")
    envelope = world.seal(page, stmt, raw, body)["request"]["envelope"]
    wire = json.loads(envelope)
    ct = wire["ct"]
    flipped = {**wire, "ct": ct[:20] + ("A" if ct[20] != "A" else "B") + ct[21:]}
    dropped = {**wire, "keys": wire["keys"][:-1]}  # a reader removed on the way
    for bad in (flipped, dropped):
        with pytest.raises(TaskRefusedError) as refused:
            open_submit(
                _spec(stmt["task"], json.dumps(bad)),
                ws=world.kit.ws,
                agent_id="ag_1",
                kex=world.agent_kex,
            )
        assert refused.value.reason.value == "sealed-invalid"


def test_nothing_is_sealed_to_an_agent_outside_the_verified_log(page: Page) -> None:
    world = World()
    stmt, raw, body = world.statement("For a stranger", agent="ag_9")
    got = world.seal(page, stmt, raw, body)
    assert got == {
        "ok": False,
        "message": "This agent is not in the signed log, so the task cannot be sealed to it. "
        "Nothing was sent.",
    }
