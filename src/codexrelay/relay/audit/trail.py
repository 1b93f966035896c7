"""The relay's audit trail as the rest of the relay sees it (B2, O4).

One ``AuditTrail`` per process (``services.audit``): the signing key, the chain on disk,
start-up records (``relay.started``, ``secrets.rotated``, ``audit.recovered``) and the
memory that turns a flood of 429s into one ``ratelimit.tripped`` record a minute.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from codexrelay import __version__
from codexrelay.auditverify import INSTANCE
from codexrelay.relay.audit.actors import RELAY, Actor
from codexrelay.relay.audit.keys import Signer, ensure_signer
from codexrelay.relay.audit.log import MAX_FILE_BYTES, STARTED_EVENT, AuditLog, Scalar

AUDIT_DIR_NAME = "audit"
TRIP_WINDOW = timedelta(seconds=60)
MAX_TRIP_KEYS = 10_000
SECRET_NAMES = ("bootstrapToken", "tokenSecret")


class AuditTrail:
    """Append, await durability, start and stop; everything else reads the files."""

    def __init__(self, data_dir: Path, *, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.data_dir = data_dir
        self.directory = data_dir / AUDIT_DIR_NAME
        self.signer: Signer
        # Configs written before the audit trail existed get their key at first start.
        self.signer, self.key_created = ensure_signer(data_dir)
        self.log = AuditLog.open(self.directory, self.signer, max_file_bytes=max_file_bytes)
        self._trips: dict[str, datetime] = {}

    def append(
        self,
        event: str,
        *,
        now: datetime,
        workspace: str = INSTANCE,
        actor: Actor = RELAY,
        client: str | None = None,
        target: dict[str, Scalar] | None = None,
    ) -> int:
        """Queue a record without waiting (for events no request is waiting on)."""
        return self.log.append(
            event, workspace=workspace, actor=actor, target=target or {}, client=client, now=now
        )

    async def record(
        self,
        event: str,
        *,
        now: datetime,
        workspace: str = INSTANCE,
        actor: Actor = RELAY,
        client: str | None = None,
        target: dict[str, Scalar] | None = None,
    ) -> None:
        """Append and return once the record is durable (answer the request after this)."""
        seq = self.append(
            event, now=now, workspace=workspace, actor=actor, client=client, target=target
        )
        await self.log.durable(seq)

    async def flush(self) -> None:
        """Return once every record so far is durable."""
        await self.log.durable()

    async def close(self) -> None:
        """Write what is pending and close the current file."""
        await self.log.close()

    def start(self, *, bootstrap_hash: str, token_secret: str, now: datetime) -> None:
        """Record this start; a secret rotated since the last start is recorded first (I3).

        The relay cannot see a rotation happen (``rotate-secrets`` edits the config while
        it may be stopped), so it compares keyed fingerprints with those the previous
        ``relay.started`` record holds.
        """
        fingerprints = {
            "bootstrapToken": self.signer.fingerprint("bootstrapToken", bootstrap_hash),
            "tokenSecret": self.signer.fingerprint("tokenSecret", token_secret),
        }
        recovered = self.log.recovery.target()
        if recovered is not None:
            self.append("audit.recovered", now=now, target=recovered)
        last = self.log.head.started
        if last is not None and last.get("keyId") != self.signer.key_id:
            target: dict[str, Scalar] = {
                "previousKeyId": last.get("keyId"),
                "keyId": self.signer.key_id,
            }
            self.append("audit.key-changed", now=now, target=target)
        elif last is not None:
            changed = {name: last.get(f"{name}Fp") != fingerprints[name] for name in SECRET_NAMES}
            if any(changed.values()):
                self.append("secrets.rotated", now=now, target=dict(changed))
        started: dict[str, Scalar] = {
            "version": __version__,
            "keyId": self.signer.key_id,
            "keyCreated": self.key_created,
            **{f"{name}Fp": value for name, value in fingerprints.items()},
        }
        self.append(STARTED_EVENT, now=now, target=started)

    def first_trip(self, key: str, now: datetime) -> bool:
        """True for the first rate-limit refusal of ``key`` in a minute (A1: a flood of
        refusals must not flood the disk)."""
        last = self._trips.get(key)
        if last is not None and now - last < TRIP_WINDOW:
            return False
        if len(self._trips) >= MAX_TRIP_KEYS:
            self._trips = {k: t for k, t in self._trips.items() if now - t < TRIP_WINDOW}
            if len(self._trips) >= MAX_TRIP_KEYS:
                return False  # a flood from very many addresses: the first ones are on record
        self._trips[key] = now
        return True

    def public_key_view(self) -> dict[str, Any]:
        """The public key in the forms the verifier accepts."""
        return {
            "algorithm": "Ed25519",
            "keyId": self.signer.key_id,
            "publicKey": self.signer.public_text,
            "publicKeyPem": self.signer.public_pem,
        }
