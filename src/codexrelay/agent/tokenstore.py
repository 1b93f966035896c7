"""The agent's token, kept in ``stateDir`` (0700) in a 0600 file, never in the config (R16).

The file also names the relay and agent id it was issued for, so a config pointed at a
different relay does not silently send this token there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from codexrelay.fileio import ensure_private_dir, write_private_file

TOKEN_FILE = "agent-token.json"  # noqa: S105 - a file name


class TokenStoreError(Exception):
    """The token file exists but cannot be used."""


@dataclass(frozen=True)
class StoredToken:
    """An agent token and what it was issued for."""

    token: str
    relay_base_url: str
    agent_id: str
    saved_at: datetime


class TokenStore:
    """Reads and atomically replaces the token file."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / TOKEN_FILE

    def load(self) -> StoredToken | None:
        """The stored token, or None if the agent has not been paired."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            return StoredToken(
                token=str(raw["token"]),
                relay_base_url=str(raw["relayBaseUrl"]),
                agent_id=str(raw["agentId"]),
                saved_at=datetime.fromisoformat(raw["savedAt"]),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            msg = (
                f"{self.path} is unreadable ({type(exc).__name__}); pair again with "
                "`codexrelay agent pair --pair-code CODE` to replace it"
            )
            raise TokenStoreError(msg) from None

    def save(self, token: str, *, relay_base_url: str, agent_id: str) -> StoredToken:
        """Replace the stored token (dir 0700, file 0600, durable on return)."""
        ensure_private_dir(self.state_dir)
        stored = StoredToken(
            token=token,
            relay_base_url=relay_base_url,
            agent_id=agent_id,
            saved_at=datetime.now(UTC),
        )
        data = {
            "token": token,
            "relayBaseUrl": relay_base_url,
            "agentId": agent_id,
            "savedAt": stored.saved_at.isoformat(),
        }
        write_private_file(self.path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
        return stored

    def usable_for(self, relay_base_url: str, agent_id: str) -> StoredToken | None:
        """The stored token if it was issued for this relay and agent id."""
        stored = self.load()
        if stored is None:
            return None
        if stored.relay_base_url.rstrip("/") != relay_base_url.rstrip("/"):
            return None
        if stored.agent_id != agent_id:
            return None
        return stored
