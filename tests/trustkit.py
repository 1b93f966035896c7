"""The phone's side of a protected workspace, in Python, over the relay's real HTTP API.

A ``TrustedPhone`` is a signed-in ``softauthn.Phone`` with a device key: it writes the
membership log (genesis, entries), approves pairings with the agent.add entry and the MAC'd
grant, and signs tasks and cancels, byte for byte as TRUST.md §4 and §5 say. Tests use it as
the honest phone, and change its output to play a hostile relay.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.log import chain_hash
from codexrelay.e2e.pairing import (
    claim_mac,
    format_pair_code,
    grant_mac,
    new_secret,
    pairing_key,
    parse_claim,
    verify_claim,
)
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.statements import digest
from codexrelay.e2e.tags import TagName, tag, tagged_hash
from codexrelay.e2e.wire import b64u, b64u_decode
from tests.softauthn import Credential, Phone

SUDO_TAG = b"codexrelay/webauthn/sudo/v1"


def dumps(obj: dict[str, Any]) -> bytes:
    """Compact JSON bytes, as the phone makes a statement."""
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Pairing:
    """A pairing code as the phone keeps it: the relay's code, the secret, the pairing id."""

    code: str
    secret: bytes
    pairing_id: str

    @property
    def shown(self) -> str:
        """What the phone shows: ``ABCD-EFGH.KQ7M-R2XD-9TPF-WC3H``."""
        return format_pair_code(self.code, self.secret)


@dataclass
class Book:
    """The phone's own copy of where the log is (it never trusts the relay's word)."""

    ws: str
    seq: int = -1
    head: str = ""
    genesis_hash: str = ""

    def advance(self, raw: bytes) -> None:
        self.seq += 1
        self.head = chain_hash(raw)
        if self.seq == 0:
            self.genesis_hash = self.head

    @property
    def log_head(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.head}


@dataclass
class TrustedPhone:
    """A person's phone: a relay session, a registered passkey and a device key."""

    phone: Phone
    user_id: str
    name: str
    rp_id: str
    clock: Callable[[], float] = time.time
    device_id: str = field(default_factory=lambda: f"dv_{secrets.token_hex(4)}")
    device_key: keys.SigningKey = field(default_factory=lambda: keys.generate_signing_key("c25519"))
    kex_key: keys.KexKey = field(default_factory=lambda: keys.generate_kex_key("c25519"))

    @classmethod
    def enroll(
        cls, phone: Phone, rp_id: str, clock: Callable[[], float] = time.time
    ) -> TrustedPhone:
        """Register a passkey on a signed-in phone and read who it is."""
        phone.enroll()
        me = phone.get("/api/v1/me").json()["user"]
        return cls(phone, me["id"], me["name"], rp_id, clock)

    @property
    def credential(self) -> Credential:
        return self.phone.authenticator.credential_for(self.rp_id)

    @property
    def origin(self) -> str:
        return self.phone.origin

    def now(self) -> int:
        return int(self.clock())

    def sudo(self, **knobs: Any) -> Any:
        """Confirm with the passkey (sudo mode for five minutes); returns the verify answer."""
        res = self.phone.post("/api/v1/auth/sudo/options", json={})
        assert res.status_code == 200, res.text
        options = res.json()
        knobs.setdefault("tag", SUDO_TAG)
        credential = self.phone.authenticator.get(options["publicKey"], origin=self.origin, **knobs)
        body = {"challengeId": options["challengeId"], "credential": credential}
        return self.phone.post("/api/v1/auth/sudo/verify", json=body)

    def passkey(self) -> dict[str, str]:
        """``{credId, cose}`` from the phone's own credential, never from the relay."""
        return {
            "credId": b64u(self.credential.credential_id),
            "cose": b64u(self.credential.cose_public_key()),
        }

    def device(self) -> dict[str, str]:
        return {
            "deviceId": self.device_id,
            "label": f"{self.name}'s phone",
            "sigPub": keys.public_text(self.device_key),
            "kexPub": keys.public_text(self.kex_key),
            "suite": "c25519",
        }

    def sign(self, tag_name: TagName, raw: bytes, **knobs: Any) -> dict[str, Any]:
        """A UV passkey signature over ``H(tag ‖ raw)`` (``knobs`` for broken ones)."""
        knobs.setdefault("credential", self.credential)
        return self.phone.authenticator.sign_statement(
            tagged_hash(tag_name, raw), rp_id=self.rp_id, origin=self.origin, **knobs
        )

    def device_sign(self, tag_name: TagName, raw: bytes) -> str:
        return b64u(keys.sign(self.device_key, tag(tag_name) + raw))

    # --- the log ---

    def genesis(self, wid: str, policy: dict[str, Any] | None = None) -> tuple[Book, dict]:
        """Turn protection on: the owner's genesis, signed and posted."""
        draft = self.phone.get(f"/api/v1/workspaces/{wid}/e2e/genesis-draft").json()
        genesis = {
            "v": 1,
            "op": "genesis",
            "ws": wid,
            "name": draft["name"],
            "origins": [self.origin],
            "rpId": self.rp_id,
            "owner": {"userId": self.user_id, "name": self.name, "passkeys": [self.passkey()]},
            "devices": [self.device()],
            "policy": policy or default_policy().model_dump(by_alias=True),
            "createdAt": self.now(),
        }
        raw = dumps(genesis)
        posted = {"entry": b64u(raw), "sigs": [self.sign("log", raw)]}
        res = self.phone.post(f"/api/v1/workspaces/{wid}/e2e/log", json=posted)
        assert res.status_code == 201, res.text
        book = Book(wid)
        book.advance(raw)
        return book, posted

    def entry(self, book: Book, op: str, body: dict[str, Any], **changes: Any) -> dict[str, Any]:
        """The next entry, signed (not posted)."""
        entry = {
            "v": 1,
            "ws": book.ws,
            "seq": book.seq + 1,
            "prev": book.head,
            "op": op,
            "body": body,
            "issuedAt": self.now(),
            **changes,
        }
        raw = dumps(entry)
        return {"entry": b64u(raw), "sigs": [self.sign("log", raw)]}

    def post_entry(self, book: Book, posted: dict[str, Any]) -> Any:
        res = self.phone.post(f"/api/v1/workspaces/{book.ws}/e2e/log", json=posted)
        if res.status_code == 201:
            book.advance(b64u_decode(posted["entry"], max_bytes=1 << 20))
        return res

    def add(self, book: Book, op: str, body: dict[str, Any]) -> Any:
        """Sign and post; asserts the relay stored it."""
        res = self.post_entry(book, self.entry(book, op, body))
        assert res.status_code == 201, res.text
        return res

    def add_member(self, book: Book, other: TrustedPhone, role: str) -> None:
        body = {
            "userId": other.user_id,
            "name": other.name,
            "role": role,
            "passkeys": [other.passkey()],
            "devices": [other.device()],
        }
        self.add(book, "member.add", body)

    # --- pairing (§4.2) ---

    def pairing_code(self, wid: str) -> Pairing:
        """A pairing code with the secret the relay never sees (kept on the phone)."""
        res = self.phone.post(f"/api/v1/workspaces/{wid}/pairings", json={})
        assert res.status_code == 201, res.text
        data = res.json()
        return Pairing(data["code"], new_secret(), data["pairing"]["id"])

    def approve(self, book: Book, request: dict[str, Any], pairing: Pairing, **tamper: Any) -> Any:
        """Check the claim's MAC (the green badge), sign agent.add and the grant, approve."""
        key = pairing_key(pairing.secret, pairing.code)
        raw_claim = b64u_decode(request["keyClaim"], max_bytes=8192)
        assert verify_claim(key, raw_claim, request["keyClaimMac"]), "unverified: do not approve"
        claim = parse_claim(raw_claim)
        body = {
            "agentId": claim.agent_id,
            "label": claim.label,
            "sigPub": claim.sig_pub,
            "kexPub": claim.kex_pub,
            "suite": claim.suite,
            "pairingId": tamper.pop("pairing_id", pairing.pairing_id),
        }
        posted = self.entry(book, "agent.add", body)
        raw_entry = b64u_decode(posted["entry"], max_bytes=1 << 20)
        grant = {
            "ws": book.ws,
            "genesisHash": tamper.pop("genesis_hash", book.genesis_hash),
            "head": {"seq": book.seq + 1, "hash": chain_hash(raw_entry)},
            "agentId": claim.agent_id,
            "pairingId": body["pairingId"],
        }
        raw_grant = dumps(grant)
        approve = {
            "logEntry": posted,
            "grant": b64u(raw_grant),
            "grantMac": tamper.pop("grant_mac", None) or grant_mac(key, raw_grant),
        }
        path = f"/api/v1/workspaces/{book.ws}/pair-requests/{request['id']}/approve"
        res = self.phone.post(path, json=approve)
        if res.status_code == 200:
            book.advance(raw_entry)
        return res

    # --- tasks (§4.5) and cancel (§4.9) ---

    def task(
        self, book: Book, agent: str, kind: str = "run_action", **fields: Any
    ) -> tuple[dict[str, Any], bytes]:
        """A task statement (dict, to tamper with) and its body bytes."""
        prompt = fields.pop("prompt", "")
        body = dumps({"prompt": prompt, "salt": b64u(secrets.token_bytes(16))})
        now = self.now()
        stmt = {
            "v": 1,
            "kind": "task",
            "ws": book.ws,
            "agent": agent,
            "task": str(uuid.uuid4()),
            "type": kind,
            "writeAccess": False,
            "cwd": None,
            "resumeSessionId": None,
            "actionId": None,
            "logSourceId": None,
            "bodyHash": digest(body),
            "device": self.device_id,
            "logHead": book.log_head,
            "issuedAt": now,
            "expiresAt": now + 300,
        }
        stmt.update(fields)
        return stmt, body

    def signed_task(self, stmt: dict[str, Any], body: bytes, **knobs: Any) -> dict[str, Any]:
        """``{stmt, body, auth}`` as POST /signed-tasks takes it."""
        raw = dumps(stmt)
        return {"stmt": b64u(raw), "body": b64u(body), "auth": [self.sign("task", raw, **knobs)]}

    def submit(self, book: Book, request: dict[str, Any]) -> Any:
        return self.phone.post(f"/api/v1/workspaces/{book.ws}/signed-tasks", json=request)

    def cancel(self, book: Book, agent: str, task_id: str) -> dict[str, str]:
        stmt = {
            "v": 1,
            "kind": "cancel",
            "ws": book.ws,
            "agent": agent,
            "task": task_id,
            "device": self.device_id,
            "issuedAt": self.now(),
        }
        raw = dumps(stmt)
        return {"stmt": b64u(raw), "sig": self.device_sign("cancel", raw)}


def claim_for(secret: bytes, code: str, claim: dict[str, Any]) -> dict[str, str]:
    """The agent's ``e2e`` field for a claim dict (for tests that play the agent)."""
    raw = dumps(claim)
    return {"claim": b64u(raw), "mac": claim_mac(pairing_key(secret, code), raw)}


# --- conversations (§4.8, §4.13) ---


def turn_input(prompt: str, **fields: Any) -> bytes:
    """A turn's input bytes: the prompt, photos, and for a new thread its cwd and model."""
    body = {"prompt": prompt, "images": None, "cwd": None, "model": None, "effort": None}
    body.update(fields)
    body["salt"] = b64u(secrets.token_bytes(16))
    return dumps(body)


def signed_turn_statement(
    phone: TrustedPhone,
    book: Book,
    agent: str,
    mode: str,
    thread: str | None,
    raw_input: bytes,
    **fields: Any,
) -> dict[str, Any]:
    """A turn statement (dict, to tamper with) committing to ``raw_input``."""
    now = phone.now()
    stmt = {
        "v": 1,
        "kind": "turn",
        "ws": book.ws,
        "agent": agent,
        "thread": thread or str(uuid.uuid4()),
        "turn": str(uuid.uuid4()),
        "mode": mode,
        "inputHash": digest(raw_input),
        "writeAccess": False,
        "device": phone.device_id,
        "logHead": book.log_head,
        "issuedAt": now,
        "expiresAt": now + 300,
    }
    stmt.update(fields)
    return stmt


def signed_turn(phone: TrustedPhone, stmt: dict[str, Any], raw_input: bytes) -> dict[str, Any]:
    """``{stmt, input, auth}`` as the conversation endpoints take it."""
    raw = dumps(stmt)
    return {"stmt": b64u(raw), "input": b64u(raw_input), "auth": [phone.sign("turn", raw)]}


def signed_decision(
    phone: TrustedPhone,
    book: Book,
    agent: str,
    approval: dict[str, Any],
    decision: str,
    **fields: Any,
) -> dict[str, Any]:
    """``{stmt, auth}``: a decision over the approval's exact request bytes."""
    now = phone.now()
    stmt = {
        "v": 1,
        "kind": "decision",
        "ws": book.ws,
        "agent": agent,
        "task": approval["threadId"],
        "requestId": approval["id"],
        "reqHash": digest(b64u_decode(approval["request"], max_bytes=1 << 21)),
        "decision": decision,
        "device": phone.device_id,
        "logHead": book.log_head,
        "issuedAt": now,
        "expiresAt": now + 300,
    }
    stmt.update(fields)
    raw = dumps(stmt)
    return {"stmt": b64u(raw), "auth": [phone.sign("decision", raw)]}


def signed_interrupt(
    phone: TrustedPhone, book: Book, agent: str, thread: str, turn: str
) -> dict[str, str]:
    """``{stmt, sig}``: a device-signed interrupt of one running turn."""
    stmt = {
        "v": 1,
        "kind": "interrupt",
        "ws": book.ws,
        "agent": agent,
        "thread": thread,
        "turn": turn,
        "device": phone.device_id,
        "issuedAt": phone.now(),
    }
    raw = dumps(stmt)
    return {"stmt": b64u(raw), "sig": phone.device_sign("interrupt", raw)}
