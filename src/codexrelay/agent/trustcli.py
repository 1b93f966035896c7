"""``codexrelay agent trust show|verify|pin|reset``: the workspace this agent pinned.

- ``show``: the pinned workspace, log head, members and roles, agents, policy, this agent's
  safety number and its audit log head (note it off the host to detect truncation later).
- ``verify``: re-verify the stored log from the pinned genesis and, unless ``--offline``,
  fetch the relay's log and check it extends ours (a fork is refused and reported).
- ``pin``: pin a protected workspace with a one-time code from the phone, for an agent
  that was paired before protection was turned on (``--code ABCD-EFGH.SECRET``).
- ``reset``: forget the pin (the keys stay); the agent then runs unsigned tasks again.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from codexrelay.agent.auditlog import AUDIT_FILE
from codexrelay.agent.commands import agent, agent_config_option, load_agent_or_exit
from codexrelay.agent.config import AgentConfig
from codexrelay.agent.enroll import PairingError, claim_code, wait_for_approval
from codexrelay.agent.logsync import fetch_log
from codexrelay.agent.pinning import PairSecret, PinError, key_claim, pin_from_grant
from codexrelay.agent.tokenstore import TokenStore, TokenStoreError
from codexrelay.agent.trust import AgentKeys, TrustError, TrustStore, agent_safety_number
from codexrelay.cliconfig import fail
from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from codexrelay.e2e.log import LogError, LogView, parse_signed

EXIT_NOT_PINNED = 4


@agent.group("trust")
def trust() -> None:
    """The protected workspace this agent pinned (TRUST.md): show, verify, pin, reset."""


def _pinned(config: AgentConfig) -> tuple[TrustStore, LogView]:
    store = TrustStore(config.state_path)
    try:
        if store.pin() is None:
            fail("this agent has not pinned a workspace", EXIT_NOT_PINNED)
        return store, store.view()
    except TrustError as exc:
        fail(str(exc))


def _token(config: AgentConfig) -> str:
    try:
        stored = TokenStore(config.state_path).usable_for(config.relay_base_url, config.agent_id)
    except TokenStoreError as exc:
        fail(str(exc))
    if stored is None:
        fail("no agent token for this relay; pair first")
    return stored.token


@trust.command("show")
@agent_config_option()
def trust_show(config_path: Path) -> None:
    """Print the pinned workspace, its members, agents, policy and this agent's heads."""
    config = load_agent_or_exit(config_path)
    store, view = _pinned(config)
    pin = store.pin()
    assert pin is not None  # noqa: S101 - _pinned exits otherwise
    agent_keys = AgentKeys.load_or_create(config.state_path)
    click.echo(f'Workspace: "{view.name}" ({view.ws}), pinned via {pin.relay_base_url}')
    click.echo(f"Approved by: {pin.approved_by}")
    click.echo(f"Genesis: {view.genesis_hash}")
    click.echo(f"Log head: {view.head}")
    if (fork := store.fork()) is not None:
        click.echo(
            f"FORK DETECTED ({fork.get('reason')}): log updates are frozen until an owner "
            "signs a checkpoint; statements on the chain above still run"
        )
    click.echo("Members:")
    for member in sorted(view.members.values(), key=lambda m: m.user_id):
        live = [p for p in view.passkeys.values() if p.user_id == member.user_id and p.active]
        click.echo(f"  {member.name} ({member.user_id}): {member.role}, {len(live)} passkey(s)")
    click.echo("Agents:")
    for other in sorted(view.agents.values(), key=lambda a: a.agent_id):
        state = "revoked" if not other.active else "active"
        click.echo(f"  {other.label} ({other.agent_id}): {state}")
    policy = view.policy
    click.echo(
        f"Policy: Codex read {policy.codex_read.min_role}+, write {policy.codex_write.min_role}+"
        f"{' (two-person)' if policy.codex_write.two_person else ''}, "
        f"actions {policy.action_default.min_role}+, logs {policy.log_default.min_role}+, "
        f"tasks valid {policy.task_ttl_sec}s"
    )
    click.echo(f"Agent key: {agent_keys.sig_pub}")
    click.echo(
        f"Safety number: {agent_safety_number(view.genesis_hash, config.agent_id, agent_keys)}"
    )
    audit = _audit_report(config, agent_keys)
    click.echo(f"Audit log: {audit}")


def _audit_report(config: AgentConfig, agent_keys: AgentKeys) -> str:
    path = config.state_path / AUDIT_FILE
    if not path.exists():
        return "no records yet"
    with path.open("rb") as fh:
        report = verify_audit(fh, keys.load_verify_key("c25519", agent_keys.sig_pub))
    state = "verified" if report.ok else f"BROKEN ({report.reason}, line {report.line})"
    return f"{report.records} records, head {report.head} ({state})"


@trust.command("verify")
@agent_config_option()
@click.option("--offline", is_flag=True, help="Check the stored copy only; do not ask the relay.")
def trust_verify(config_path: Path, offline: bool) -> None:
    """Verify the stored log from the pinned genesis, then the relay's log on top of it."""
    config = load_agent_or_exit(config_path)
    store, view = _pinned(config)
    click.echo(f"Stored log verified from the pinned genesis: head {view.head}")
    if offline:
        return
    try:
        entries = fetch_log(config.relay_base_url, _token(config))
    except OSError as exc:
        fail(f"cannot fetch the relay's log: {exc}")
    for seq, posted in enumerate(entries[: view.head.seq + 1]):
        ours = view.entries[seq].model_dump(by_alias=True, exclude_none=True)
        if posted.get("entry") != ours["entry"]:
            store.mark_fork(f"the relay's entry #{seq} differs", int(time.time()))
            fail(f"fork detected: the relay's entry #{seq} differs from the one this agent pinned")
    try:
        extended = store.adopt(
            [parse_signed(e, i) for i, e in enumerate(entries)][view.head.seq + 1 :]
        )
    except LogError as exc:
        fail(f"the relay's newer entries are not adopted: {exc}")
    click.echo(f"Relay's log verified: head {extended.head} ({len(entries)} entries)")


@trust.command("pin")
@agent_config_option()
@click.option(
    "--code", "code_text", required=True, help="The code the phone shows: XXXX-XXXX.SECRET"
)
def trust_pin(config_path: Path, code_text: str) -> None:
    """Pin a protected workspace with a one-time code from the phone (already paired agents).

    The agent sends its key claim (MAC'd with the code's secret) with its token; an admin
    approves on the phone, which signs this agent's keys into the log and sends a grant."""
    config = load_agent_or_exit(config_path)
    token = _token(config)
    agent_keys = AgentKeys.load_or_create(config.state_path)
    try:
        pair = PairSecret.parse(code_text)
        claim = claim_code(config, pair.code, key_claim(config, agent_keys, pair), pin_token=token)
        click.echo("Pin request sent; approve it on your phone (Agents -> Pending requests).")
        approval = wait_for_approval(config, claim, pin=True)
        report = pin_from_grant(
            config,
            agent_keys,
            TrustStore(config.state_path),
            pair=pair,
            token=token,
            grant=approval.grant,
            grant_mac=approval.grant_mac,
        )
    except (PairingError, PinError) as exc:
        fail(f"pinning failed: {exc}; nothing was pinned")
    for line in report.lines():
        click.echo(line)


@trust.command("reset")
@agent_config_option()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def trust_reset(config_path: Path, yes: bool) -> None:
    """Forget the pinned workspace (keys and audit log stay). Unsigned tasks run again."""
    config = load_agent_or_exit(config_path)
    if not yes and not click.confirm("Forget the pinned workspace? Unsigned tasks will run again"):
        sys.exit(1)
    found = TrustStore(config.state_path).reset()
    click.echo("Forgot the pinned workspace." if found else "Nothing was pinned.")
    click.echo(
        f"({time.strftime('%Y-%m-%d %H:%M:%S')}) Pin again with `codexrelay agent trust pin`."
    )
