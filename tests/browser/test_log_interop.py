"""The phone's log verifier (``web/e2e/log.js``) agrees with the agent's (``codexrelay.e2e.log``)
on logs Python signs: the same members, roles, head and signers for a valid log, and a
refusal with the matching reason for a forged signature, a signature without user
verification, an entry the signer's role may not sign, a broken link and a foreign genesis."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page

from codexrelay.e2e.policy import default_policy
from tests.browser import test_e2e_interop as interop
from tests.unit.e2e.logkit import LogKit, agent_body

# The interop harness page: the product's modules under the product CSP.
origin = interop.origin
page = interop.page

pytestmark = pytest.mark.browser

VERIFY = """async (arg) => {
  const log = await import("/e2e/log.js");
  try {
    const view = await log.verifyLog(arg.entries, { pinned: arg.pinned });
    return {
      ok: true,
      head: view.head,
      genesisHash: view.genesisHash,
      roles: Object.fromEntries([...view.members.values()].map((m) => [m.userId, m.role])),
      agents: [...view.agents.keys()],
      signers: view.history.map((c) => c.signers.join(",")),
    };
  } catch (err) {
    return { ok: false, seq: err.seq, reason: err.reason || err.message };
  }
}"""


def verify(page: Page, kit: LogKit, pinned: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(VERIFY, {"entries": kit.signed, "pinned": pinned})
    return result


def _kit() -> LogKit:
    kit = LogKit()
    admin = kit.member("u_ada", "admin")
    kit.add("agent.add", agent_body()[0], admin)
    policy = default_policy().model_dump(by_alias=True) | {"taskTtlSec": 300}
    kit.add("policy.set", {"policy": policy}, kit.owner)
    return kit


def test_a_valid_log_reads_the_same_on_the_phone(page: Page) -> None:
    kit = _kit()
    view = kit.view()
    got = verify(page, kit, pinned=kit.genesis_hash)
    assert got["ok"], got
    assert got["head"] == {"seq": view.head.seq, "hash": view.head.hash}
    assert got["genesisHash"] == view.genesis_hash
    assert got["roles"] == {u: m.role for u, m in view.members.items()}
    assert got["agents"] == list(view.agents)
    assert got["signers"] == ["u_owner", "u_owner", "u_ada", "u_owner"]


def test_a_forged_signature_is_refused(page: Page) -> None:
    kit = _kit()
    signed = kit.signed[2]
    response = signed["sigs"][0]["assertion"]["response"]
    sig = response["signature"]
    response["signature"] = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    got = verify(page, kit)
    assert (got["ok"], got["seq"]) == (False, 2)
    assert got["reason"].startswith("bad-signature")


def test_a_signature_without_user_verification_is_refused(page: Page) -> None:
    kit = LogKit()
    kit.add("checkpoint", {"reason": "x"}, kit.owner, user_verified=False)
    got = verify(page, kit)
    assert got == {"ok": False, "seq": 1, "reason": "bad-signature (user-not-verified)"}


def test_an_entry_beyond_the_signers_role_is_refused(page: Page) -> None:
    kit = LogKit()
    admin = kit.member("u_ada", "admin")
    kit.add("policy.set", {"policy": default_policy().model_dump(by_alias=True)}, admin)
    assert verify(page, kit) == {"ok": False, "seq": 2, "reason": "not-allowed"}


def test_a_broken_link_and_a_foreign_genesis_are_refused(page: Page) -> None:
    kit = LogKit()
    kit.add("checkpoint", {"reason": "x"}, kit.owner, changes={"prev": "A" * 43})
    assert verify(page, kit) == {"ok": False, "seq": 1, "reason": "bad-prev"}
    other = LogKit()
    got = verify(page, other, pinned=kit.genesis_hash)
    assert got == {"ok": False, "seq": 0, "reason": "genesis-mismatch"}
