"""A software passkey authenticator and the browser's part of a WebAuthn ceremony.

``SoftAuthenticator`` makes real ES256 (P-256) credentials and produces the JSON a browser's
``credential.toJSON()`` returns: ``RegistrationResponseJSON`` with a "none" attestation and
real authenticator data (UP|UV|AT, attested credential data, COSE key), and
``AuthenticationResponseJSON`` signed over ``authenticatorData || SHA-256(clientDataJSON)``.

Like the phone app, it replaces the relay's challenge ``C`` with
``SHA-256(TAG || 0x00 || C)`` before signing (API.md, purpose-tagged challenges). Every part
a hostile or broken client could get wrong has a knob, so tests can prove the relay refuses it.

``Phone`` pairs an authenticator with a session cookie and drives the relay's endpoints.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient

REGISTER_TAG = b"codexrelay/webauthn/register/v1"
LOGIN_TAG = b"codexrelay/webauthn/login/v1"
COOKIE = "codexrelay-session"

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08  # backup eligible (a synced passkey)
FLAG_BS = 0x10  # backed up
FLAG_AT = 0x40


def b64url(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tag_challenge(tag: bytes, challenge: bytes) -> bytes:
    """What the client hands the authenticator instead of the relay's raw challenge."""
    return hashlib.sha256(tag + b"\x00" + challenge).digest()


# --- CBOR, just the subset a COSE key and a "none" attestation object need (RFC 8949) ---


def _cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if value < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, value)
    raise ValueError("integer too large for CBOR")


def cbor(value: Any) -> bytes:
    """Encode ints, bytes, text, lists and dicts (insertion order, as authenticators do)."""
    if isinstance(value, bool) or value is None:
        raise TypeError("not needed here")
    if isinstance(value, int):
        return _cbor_head(0, value) if value >= 0 else _cbor_head(1, -1 - value)
    if isinstance(value, bytes):
        return _cbor_head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return _cbor_head(3, len(raw)) + raw
    if isinstance(value, list):
        return _cbor_head(4, len(value)) + b"".join(cbor(item) for item in value)
    if isinstance(value, dict):
        items = b"".join(cbor(k) + cbor(v) for k, v in value.items())
        return _cbor_head(5, len(value)) + items
    raise TypeError(f"cannot CBOR-encode {type(value).__name__}")


# --- the authenticator ---


@dataclass
class Credential:
    """One resident (discoverable) credential held by the authenticator."""

    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    sign_count: int = 0

    def cose_public_key(self) -> bytes:
        """The EC2 / P-256 / ES256 COSE_Key (RFC 9053)."""
        numbers = self.private_key.public_key().public_numbers()
        return cbor(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )


@dataclass
class SoftAuthenticator:
    """A platform authenticator with user verification and resident keys.

    ``counter_step`` is how much the sign count rises per assertion (0 models synced
    passkeys, which always report 0).
    """

    counter_step: int = 1
    aaguid: bytes = bytes(16)
    credentials: list[Credential] = field(default_factory=list)

    def create(
        self,
        public_key: dict[str, Any],
        *,
        origin: str,
        tag: bytes | None = REGISTER_TAG,
        challenge: bytes | None = None,
        rp_id: str | None = None,
        user_verified: bool = True,
        client_type: str = "webauthn.create",
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.create()`` followed by ``toJSON()``.

        ``tag=None`` signs the relay's challenge untagged (a client that skipped the purpose
        tag); ``challenge`` replaces it outright; ``rp_id`` overrides the options' rp id;
        ``credential_id`` picks the new credential's id.
        """
        rp = rp_id or public_key["rp"]["id"]
        credential = Credential(
            credential_id=credential_id or secrets.token_bytes(32),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp,
            user_handle=b64url_decode(public_key["user"]["id"]),
        )
        client_data = self._client_data(
            client_type, public_key["challenge"], tag, challenge, origin
        )
        attested = (
            self.aaguid
            + struct.pack(">H", len(credential.credential_id))
            + credential.credential_id
            + credential.cose_public_key()
        )
        flags = FLAG_UP | FLAG_AT | (FLAG_UV if user_verified else 0)
        auth_data = self._auth_data(rp, flags, credential.sign_count) + attested
        attestation = cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        self.credentials.append(credential)
        return {
            "id": b64url(credential.credential_id),
            "rawId": b64url(credential.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal", "hybrid"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def get(
        self,
        public_key: dict[str, Any],
        *,
        origin: str,
        tag: bytes | None = LOGIN_TAG,
        challenge: bytes | None = None,
        rp_id: str | None = None,
        sign_count: int | None = None,
        credential: Credential | None = None,
        user_verified: bool = True,
        client_type: str = "webauthn.get",
        cross_origin: bool = False,
        top_origin: str | None = None,
        backup_flags: int = 0,
        user_present: bool = True,
    ) -> dict[str, Any]:
        """``navigator.credentials.get()`` followed by ``toJSON()``.

        With no ``allowCredentials`` the authenticator picks its own resident credential for
        the rp id, as a discoverable login does. ``sign_count`` forces the reported counter;
        ``cross_origin``/``top_origin`` model a ceremony run inside a foreign frame;
        ``backup_flags`` adds BE/BS bits (a synced passkey).
        """
        rp = rp_id or public_key["rpId"]
        chosen = credential or self.credential_for(public_key["rpId"])
        chosen.sign_count += self.counter_step
        count = chosen.sign_count if sign_count is None else sign_count
        client_data = self._client_data(
            client_type,
            public_key["challenge"],
            tag,
            challenge,
            origin,
            cross_origin=cross_origin,
            top_origin=top_origin,
        )
        flags = (FLAG_UP if user_present else 0) | (FLAG_UV if user_verified else 0) | backup_flags
        auth_data = self._auth_data(rp, flags, count)
        signature = chosen.private_key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        return {
            "id": b64url(chosen.credential_id),
            "rawId": b64url(chosen.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(chosen.user_handle),
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }

    def sign_statement(
        self, challenge: bytes, *, rp_id: str, origin: str, **knobs: Any
    ) -> dict[str, Any]:
        """A passkey signature over a statement (TRUST.md §4): ``get()`` with the app's own
        ``challenge = H(tag ‖ S)``, never a relay-chosen one; returns
        ``{credentialId, assertion}``. ``knobs`` are :meth:`get`'s (UV off, forced counts...).
        """
        assertion = self.get(
            {"rpId": rp_id, "challenge": ""}, origin=origin, challenge=challenge, **knobs
        )
        return {"credentialId": assertion["id"], "assertion": assertion}

    def new_credential(self, rp_id: str, user_handle: bytes = b"user") -> Credential:
        """Make a resident credential directly (what a finished registration leaves)."""
        credential = Credential(
            credential_id=secrets.token_bytes(16),
            private_key=ec.generate_private_key(ec.SECP256R1()),
            rp_id=rp_id,
            user_handle=user_handle,
        )
        self.credentials.append(credential)
        return credential

    def credential_for(self, rp_id: str) -> Credential:
        """The newest credential this authenticator holds for ``rp_id``."""
        for credential in reversed(self.credentials):
            if credential.rp_id == rp_id:
                return credential
        raise LookupError(f"no credential for {rp_id}")

    @staticmethod
    def _auth_data(rp_id: str, flags: int, sign_count: int) -> bytes:
        rp_hash = hashlib.sha256(rp_id.encode("utf-8")).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", sign_count)

    @staticmethod
    def _client_data(
        client_type: str,
        relay_challenge: str,
        tag: bytes | None,
        challenge: bytes | None,
        origin: str,
        *,
        cross_origin: bool = False,
        top_origin: str | None = None,
    ) -> bytes:
        raw = b64url_decode(relay_challenge)
        signed = challenge if challenge is not None else (tag_challenge(tag, raw) if tag else raw)
        data: dict[str, Any] = {
            "type": client_type,
            "challenge": b64url(signed),
            "origin": origin,
            "crossOrigin": cross_origin,
        }
        if top_origin is not None:
            data["topOrigin"] = top_origin
        return json.dumps(data, separators=(",", ":")).encode("utf-8")


# --- the phone: a cookie of its own plus an authenticator, over one in-process client ---


@dataclass
class Phone:
    """One person's browser against an in-process relay.

    Several phones share one ``TestClient`` (and so one app and lifespan); each sends only its
    own session cookie, and picks up a new one whenever the relay sets it.
    """

    client: TestClient
    authenticator: SoftAuthenticator = field(default_factory=SoftAuthenticator)
    cookie: str | None = None

    @property
    def origin(self) -> str:
        """The relay's public origin (what the browser's address bar shows)."""
        origin: str = self.client.headers["Origin"]
        return origin

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request carrying this phone's cookie only."""
        headers = dict(kwargs.pop("headers", {}) or {})
        if self.cookie:
            headers["Cookie"] = f"{COOKIE}={self.cookie}"
        self.client.cookies.clear()
        res = self.client.request(method, path, headers=headers, **kwargs)
        fresh = res.cookies.get(COOKIE)
        if fresh is not None:
            self.cookie = fresh or None
        elif COOKIE in res.headers.get("set-cookie", ""):
            self.cookie = None  # the relay cleared it
        self.client.cookies.clear()
        return res

    def get(self, path: str, **kwargs: Any) -> Any:
        """GET with this phone's cookie."""
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST with this phone's cookie."""
        return self.request("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        """PATCH with this phone's cookie."""
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        """DELETE with this phone's cookie."""
        return self.request("DELETE", path, **kwargs)

    def bootstrap(self, token: str) -> Phone:
        """Sign in with the recovery token."""
        res = self.post("/api/v1/auth/bootstrap", json={"token": token})
        assert res.status_code == 200, res.text
        return self

    def register_options(self, label: str | None = None) -> dict[str, Any]:
        """Ask the relay for registration options."""
        body = {} if label is None else {"label": label}
        res = self.post("/api/v1/auth/passkeys/register/options", json=body)
        assert res.status_code == 200, res.text
        result: dict[str, Any] = res.json()
        return result

    def register(self, label: str | None = None, **knobs: Any) -> Any:
        """A whole registration ceremony; returns the verify response."""
        options = self.register_options(label)
        credential = self.authenticator.create(
            options["publicKey"], origin=knobs.pop("origin", self.origin), **knobs
        )
        body: dict[str, Any] = {"challengeId": options["challengeId"], "credential": credential}
        return self.post("/api/v1/auth/passkeys/register/verify", json=body)

    def login_options(self) -> dict[str, Any]:
        """Ask the relay for login options."""
        res = self.post("/api/v1/auth/passkeys/login/options", json={})
        assert res.status_code == 200, res.text
        result: dict[str, Any] = res.json()
        return result

    def login(self, **knobs: Any) -> Any:
        """A whole discoverable login ceremony; returns the verify response."""
        options = self.login_options()
        credential = self.authenticator.get(
            options["publicKey"], origin=knobs.pop("origin", self.origin), **knobs
        )
        body = {"challengeId": options["challengeId"], "credential": credential}
        return self.post("/api/v1/auth/passkeys/login/verify", json=body)

    def enroll(self, label: str | None = None) -> Phone:
        """Register a passkey and assert it worked."""
        res = self.register(label)
        assert res.status_code == 201, res.text
        return self


def join_by_invite(inviter: Phone, workspace_id: str, role: str, name: str) -> Phone:
    """Invite someone, accept on a fresh phone, enroll a passkey: an active member."""
    res = inviter.post(f"/api/v1/workspaces/{workspace_id}/invites", json={"role": role})
    assert res.status_code == 201, res.text
    phone = Phone(inviter.client)
    accepted = phone.post("/api/v1/invites/accept", json={"code": res.json()["code"], "name": name})
    assert accepted.status_code == 200, accepted.text
    return phone.enroll()
