"""The agent's half of pairing (R06): claim a code, wait for the phone's decision."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import httpx

from codexrelay import __version__
from codexrelay.agent.config import AgentConfig
from codexrelay.crypto import CODE_ALPHABET, normalize_code

POLL_INTERVAL_SEC = 1.0


class PairingError(Exception):
    """Pairing did not produce a token; the message says why and what to do."""


@dataclass(frozen=True)
class Claim:
    """A claimed code: the request to poll and its secret."""

    request_id: str
    poll_secret: str
    expires_at: datetime


def _client(config: AgentConfig) -> httpx.Client:
    return httpx.Client(
        base_url=config.relay_base_url,
        timeout=15,
        headers={"User-Agent": f"codexrelay-agent/{__version__}"},
    )


def _error_message(res: httpx.Response) -> str:
    try:
        body = res.json()
        return str(body.get("message") or body.get("error") or res.status_code)
    except ValueError:
        return f"the relay answered {res.status_code}"


def code_format_problem(code: str) -> str | None:
    """Why ``code`` cannot be a pairing code at all, told before any request; or None.

    Lower case, spaces, a missing dash and look-alike letters (O, I, L) are accepted, as the
    relay accepts them. Whether a well-formed code is valid, expired or used only the relay
    knows, and it does not say which.
    """
    normal = normalize_code(code)
    groups = normal.split("-")
    if len(groups) == 2 and all(len(g) == 4 and set(g) <= set(CODE_ALPHABET) for g in groups):
        return None
    return (
        f"{code!r} is not a pairing code: codes look like XXXX-XXXX (8 letters and digits, "
        "as shown on the phone under Agents -> Pair an agent)"
    )


def _error_code(res: httpx.Response) -> str:
    try:
        return str(res.json().get("error") or "")
    except (ValueError, AttributeError):
        return ""


def claim_code(config: AgentConfig, code: str) -> Claim:
    """Claim a pairing code for this agent; raises ``PairingError`` with a clear reason."""
    body = {
        "code": normalize_code(code),
        "agentId": config.agent_id,
        "label": config.agent_label,
        "hostname": socket.gethostname()[:255],
        "workspaceRootName": config.root.name,
    }
    try:
        with _client(config) as client:
            res = client.post("/api/v1/agent/pair", json=body)
    except httpx.HTTPError as exc:
        msg = f"cannot reach the relay at {config.relay_base_url}: {type(exc).__name__}"
        raise PairingError(msg) from None
    if res.status_code == 429:
        wait = res.headers.get("retry-after", "60")
        msg = f"too many pairing attempts; wait {wait} seconds and try again"
        raise PairingError(msg)
    if res.status_code != 202:
        message = _error_message(res)
        if _error_code(res) == "invalid-or-expired-code":
            # As unrevealing as the relay: never whether the code existed, expired or was used.
            message += " A code works once and expires; create a new one on the phone."
        raise PairingError(message)
    data = res.json()
    return Claim(
        request_id=data["requestId"],
        poll_secret=data["pollSecret"],
        expires_at=datetime.fromisoformat(data["expiresAt"].replace("Z", "+00:00")),
    )


def wait_for_token(
    config: AgentConfig,
    claim: Claim,
    *,
    on_poll: Callable[[str], None] = lambda _status: None,
    interval: float = POLL_INTERVAL_SEC,
) -> str:
    """Poll until the request is approved (returns the token) or ends otherwise (raises)."""
    headers = {"Authorization": f"Bearer {claim.poll_secret}"}
    with _client(config) as client:
        while True:
            try:
                res = client.get(f"/api/v1/agent/pair/{claim.request_id}", headers=headers)
            except httpx.HTTPError:
                on_poll("unreachable")
                time.sleep(interval)
                continue
            if res.status_code != 200:
                raise PairingError(_error_message(res))
            data = res.json()
            status = data.get("status")
            on_poll(str(status))
            if status == "approved" and data.get("agentToken"):
                return str(data["agentToken"])
            if status == "rejected":
                msg = "the pairing request was rejected on the phone"
                raise PairingError(msg)
            if status in {"expired", "completed"}:
                msg = "the pairing request expired; create a new code on the phone and retry"
                raise PairingError(msg)
            time.sleep(interval)
