"""Response shapes shared by several route modules (the published OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from codexrelay.relay.views import UserOut
from codexrelay.settings import CamelModel


class UserEnvelope(CamelModel):
    user: UserOut


class ErrorOut(CamelModel):
    error: str
    message: str
    request_id: str | None = None  # only on 500s, to match a log line


# Every route may answer with the one error shape (API.md), so the schema says so.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {"model": ErrorOut, "description": "An error: a stable code and one sentence"}
}
