"""Build real membership logs for tests: people with software passkeys sign real entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from codexrelay.e2e import keys
from codexrelay.e2e.log import LogView, chain_hash, parse_signed, verify_log
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.tags import tag, tagged_hash
from codexrelay.e2e.wire import b64u
from tests.softauthn import Credential, SoftAuthenticator
from tests.unit.e2e.builders import NOW, ORIGIN, RP_ID


@dataclass
class Person:
    """Someone with one software passkey."""

    user_id: str
    role: str = "member"
    authenticator: SoftAuthenticator = field(default_factory=SoftAuthenticator)
    credential: Credential | None = None

    def __post_init__(self) -> None:
        self.credential = self.authenticator.new_credential(RP_ID, self.user_id.encode())

    @property
    def cred_id(self) -> str:
        assert self.credential is not None
        return b64u(self.credential.credential_id)

    def passkey(self) -> dict[str, str]:
        """``{credId, cose}`` as the log pins it."""
        assert self.credential is not None
        return {"credId": self.cred_id, "cose": b64u(self.credential.cose_public_key())}

    def sign(self, raw: bytes, **knobs: Any) -> dict[str, Any]:
        """A passkey signature over log bytes: challenge = H(tag(log) ‖ raw)."""
        knobs.setdefault("credential", self.credential)
        return self.authenticator.sign_statement(
            tagged_hash("log", raw), rp_id=RP_ID, origin=ORIGIN, **knobs
        )


def device_keys(device_id: str, suite: str = "c25519") -> dict[str, Any]:
    """A device's public keys, freshly generated."""
    return {
        "deviceId": device_id,
        "label": f"phone {device_id}",
        "sigPub": keys.public_text(keys.generate_signing_key(suite)),  # type: ignore[arg-type]
        "kexPub": keys.public_text(keys.generate_kex_key(suite)),  # type: ignore[arg-type]
        "suite": suite,
    }


def dumps(obj: dict[str, Any]) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(obj, separators=(",", ":")).encode()


class LogKit:
    """A workspace log being written: the genesis by ``owner``, then entries."""

    def __init__(self, ws: str = "ws_7") -> None:
        self.ws = ws
        self.owner = Person("u_owner", "owner")
        self.people: dict[str, Person] = {"u_owner": self.owner}
        genesis = {
            "v": 1,
            "op": "genesis",
            "ws": ws,
            "name": "acme",
            "origins": [ORIGIN],
            "rpId": RP_ID,
            "owner": {"userId": "u_owner", "name": "Olive", "passkeys": [self.owner.passkey()]},
            "devices": [device_keys("dv_owner")],
            "policy": default_policy().model_dump(by_alias=True),
            "createdAt": NOW,
        }
        raw = dumps(genesis)
        self.signed: list[dict[str, Any]] = [{"entry": b64u(raw), "sigs": [self.owner.sign(raw)]}]
        self.head = chain_hash(raw)
        self.genesis_hash = self.head

    @property
    def seq(self) -> int:
        """The seq the next entry takes."""
        return len(self.signed)

    def entry_bytes(
        self, op: str, body: dict[str, Any], changes: dict[str, Any] | None = None
    ) -> bytes:
        """The bytes of the next entry (``changes`` override envelope fields)."""
        entry = {
            "v": 1,
            "ws": self.ws,
            "seq": self.seq,
            "prev": self.head,
            "op": op,
            "body": body,
            "issuedAt": NOW + self.seq,
        }
        entry.update(changes or {})
        return dumps(entry)

    def make(self, op: str, body: dict[str, Any], signer: Person, **knobs: Any) -> dict[str, Any]:
        """A signed entry that is *not* appended (to present to a verifier)."""
        changes = knobs.pop("changes", {})
        raw = self.entry_bytes(op, body, changes)
        return {"entry": b64u(raw), "sigs": [signer.sign(raw, **knobs)]}

    def append(self, signed: dict[str, Any]) -> dict[str, Any]:
        """Append a signed entry to the chain we hand out (valid or not)."""
        self.signed.append(signed)
        from codexrelay.e2e.wire import b64u_decode  # noqa: PLC0415

        self.head = chain_hash(b64u_decode(signed["entry"], max_bytes=1 << 20))
        return signed

    def add(self, op: str, body: dict[str, Any], signer: Person, **knobs: Any) -> dict[str, Any]:
        """Sign and append."""
        return self.append(self.make(op, body, signer, **knobs))

    def member(self, user_id: str, role: str, signer: Person | None = None) -> Person:
        """Add a person with ``role`` (signed by the owner unless said otherwise)."""
        person = Person(user_id, role)
        self.people[user_id] = person
        body = {
            "userId": user_id,
            "name": user_id.title(),
            "role": role,
            "passkeys": [person.passkey()],
            "devices": [device_keys(f"dv_{user_id}")],
        }
        self.add("member.add", body, signer or self.owner)
        return person

    def agent_sign(
        self, op: str, body: dict[str, Any], key: keys.SigningKey, agent_id: str
    ) -> dict[str, Any]:
        """An entry signed by an agent key (``agent.rotate``)."""
        raw = self.entry_bytes(op, body)
        sig = b64u(keys.sign(key, tag("log") + raw))
        return {"entry": b64u(raw), "sigs": [{"agentKey": agent_id, "sig": sig}]}

    def view(self, upto: int | None = None) -> LogView:
        """Verify the log (or its first ``upto`` entries) from the genesis."""
        entries = self.signed if upto is None else self.signed[:upto]
        return verify_log([parse_signed(e) for e in entries], pinned=self.genesis_hash)


def agent_body(
    agent_id: str = "ag_1", suite: str = "c25519"
) -> tuple[dict[str, Any], keys.SigningKey]:
    """An agent.add body and the agent's signing key."""
    key = keys.generate_signing_key(suite)  # type: ignore[arg-type]
    body = {
        "agentId": agent_id,
        "label": "build-01",
        "sigPub": keys.public_text(key),
        "kexPub": keys.public_text(keys.generate_kex_key(suite)),  # type: ignore[arg-type]
        "suite": suite,
        "pairingId": "pr_1",
    }
    return body, key
