"""Response shapes shared by several route modules (the published OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from codexrelay.relay.storage.records import Role, SessionRecord, SessionVia, UserRecord, UserStatus
from codexrelay.settings import CamelModel


class UserOut(CamelModel):
    id: str
    name: str
    status: UserStatus
    is_owner: bool

    @classmethod
    def of(cls, user: UserRecord) -> UserOut:
        """The public view of a user."""
        return cls(id=user.id, name=user.name, status=user.status, is_owner=user.is_owner)


class UserEnvelope(CamelModel):
    user: UserOut


class WorkspaceOut(CamelModel):
    id: str
    name: str
    role: Role


class SessionOut(CamelModel):
    id: str
    via: SessionVia
    created_at: datetime
    expires_at: datetime
    last_seen_at: datetime
    current: bool

    @classmethod
    def of(cls, record: SessionRecord, *, current_id: str) -> SessionOut:
        """The public view of a session (never its hash)."""
        return cls(
            id=record.id,
            via=record.via,
            created_at=record.created_at,
            expires_at=record.expires_at,
            last_seen_at=record.last_seen_at,
            current=record.id == current_id,
        )


class ErrorOut(CamelModel):
    error: str
    message: str
    request_id: str | None = None  # only on 500s, to match a log line


# Every route may answer with the one error shape (API.md), so the schema says so.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {"model": ErrorOut, "description": "An error: a stable code and one sentence"}
}
