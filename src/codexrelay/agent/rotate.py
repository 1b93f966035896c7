"""``codexrelay agent trust rotate-key``: new agent keys, announced in the log (TRUST.md §4.10).

The agent makes new Ed25519/X25519 keys and signs an ``agent.rotate`` entry naming them
with its *current* key (the log takes that entry from the agent alone, never from a
passkey). The order keeps the agent usable whatever fails:

1. the new keys go to ``agent-keys.next.json`` (0600);
2. the entry is posted with the agent's token; the relay checks it against its log;
3. a ``key.rotate`` record, signed by the old key and holding the entry, is appended to the
   audit log, so a verifier switches keys there (``codexrelay audit verify``);
4. the new keys replace ``agent-keys.json`` and the entry joins the pinned log.

If the post fails, the next-keys file is removed and nothing changed. The agent must be
stopped while this runs: it holds its keys in memory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
import httpx

from codexrelay import __version__
from codexrelay.agent.auditlog import AuditLog
from codexrelay.agent.commands import agent_config_option, load_agent_or_exit
from codexrelay.agent.config import AgentConfig
from codexrelay.agent.logsync import LOG_PATH, fetch_log
from codexrelay.agent.status import StatusFile
from codexrelay.agent.trust import KEYS_FILE, AgentKeys, TrustError, TrustStore, agent_safety_number
from codexrelay.agent.trustcli import _token, trust
from codexrelay.cliconfig import fail
from codexrelay.e2e import keys
from codexrelay.e2e.audit import ROTATE_KIND
from codexrelay.e2e.log import LogError, LogView, parse_signed
from codexrelay.e2e.tags import tag
from codexrelay.e2e.wire import b64u, b64u_decode

NEXT_KEYS_FILE = "agent-keys.next.json"


def rotation_entry(
    view: LogView, agent_id: str, old: AgentKeys, new: AgentKeys, now: int
) -> dict[str, Any]:
    """``{"entry", "sigs"}``: ``agent.rotate`` on the head, signed by the current key."""
    entry = {
        "v": 1,
        "ws": view.ws,
        "seq": view.head.seq + 1,
        "prev": view.head.hash,
        "op": "agent.rotate",
        "body": {
            "agentId": agent_id,
            "sigPub": new.sig_pub,
            "kexPub": new.kex_pub,
            "suite": "c25519",
        },
        "issuedAt": now,
    }
    raw = json.dumps(entry, separators=(",", ":")).encode("utf-8")
    sig = b64u(keys.sign(old.signing, tag("log") + raw))
    return {"entry": b64u(raw), "sigs": [{"agentKey": agent_id, "sig": sig}]}


def _current_view(config: AgentConfig, store: TrustStore, token: str) -> LogView:
    """The pinned log brought up to the relay's head (verified), so the entry is on top."""
    try:
        view = store.view()
        found = fetch_log(config.relay_base_url, token, view.head.seq + 1)
        entries = [parse_signed(e, view.head.seq + 1 + i) for i, e in enumerate(found)]
        return store.extend(entries) if entries else view
    except (TrustError, LogError, OSError) as exc:
        fail(f"cannot bring the pinned log up to date: {exc}")


def _post(config: AgentConfig, token: str, posted: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {token}", "User-Agent": f"codexrelay-agent/{__version__}"}
    try:
        res = httpx.post(
            f"{config.relay_base_url}{LOG_PATH}", json=posted, headers=headers, timeout=15
        )
    except httpx.HTTPError as exc:
        raise OSError(str(exc)) from None
    if res.status_code != 201:
        raise OSError(f"the relay answered {res.status_code}: {res.text[:300]}")


@trust.command("rotate-key")
@agent_config_option()
def trust_rotate_key(config_path: Path) -> None:
    """Replace this agent's keys; the log records the change, signed by the old key."""
    config = load_agent_or_exit(config_path)
    state = config.state_path
    if StatusFile(state).running_pid() is not None:
        fail("stop the agent first (codexrelay agent stop): it holds its keys in memory")
    store = TrustStore(state)
    try:
        pin = store.pin()
    except TrustError as exc:
        fail(str(exc))
    if pin is None:
        fail("this agent has not pinned a workspace; there is no log to announce keys in", 4)
    token = _token(config)
    view = _current_view(config, store, token)
    old = AgentKeys.load_or_create(state)
    new = AgentKeys.generate()
    posted = rotation_entry(view, config.agent_id, old, new, int(time.time()))
    new.save(state / NEXT_KEYS_FILE)
    try:
        _post(config, token, posted)
    except OSError as exc:
        (state / NEXT_KEYS_FILE).unlink(missing_ok=True)
        fail(f"the relay did not take the new keys: {exc}")
    AuditLog(state, old.signing, agent=config.agent_id, ws=pin.workspace_id).append(
        outcome="accepted",
        kind=ROTATE_KIND,
        now=int(time.time()),
        statement=b64u_decode(posted["entry"], max_bytes=1 << 16),
    )
    (state / NEXT_KEYS_FILE).replace(state / KEYS_FILE)
    extended = store.extend([parse_signed(posted, view.head.seq + 1)])
    click.echo(f"New agent key: {new.sig_pub} (log head {extended.head})")
    click.echo(f"Safety number: {agent_safety_number(view.genesis_hash, config.agent_id, new)}")
    click.echo("Start the agent again; phones show the new safety number.")
