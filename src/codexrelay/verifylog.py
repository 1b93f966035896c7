"""``codexrelay verify-log``: check a protected workspace's membership log, and optionally
an agent's audit log, with no relay and no config (TRUST.md §7, B2).

The log is what ``GET /api/v1/workspaces/{wid}/e2e/log`` returns (``{"entries": [...]}``)
or an agent's ``membership-log.jsonl`` (one signed entry per line). Every entry is verified
from the genesis (its hash pinned with ``--genesis-hash`` when given); the members, devices
and agents at the head are printed with their safety numbers, the same digits the phone
and ``codexrelay agent trust show`` print. ``--agent-audit`` checks an agent's audit log
against that agent's signing key as the log certifies it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from codexrelay.e2e import keys
from codexrelay.e2e.audit import verify_audit
from codexrelay.e2e.log import LogError, parse_signed, verify_log
from codexrelay.e2e.logview import LogView
from codexrelay.e2e.safety import format_safety_number, safety_number
from codexrelay.e2e.wire import b64u_decode


def read_entries(path: Path) -> list[Any]:
    """Signed entries from an API answer (JSON) or an agent's JSONL file."""
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and "entries" in data:
        found = data["entries"]
    else:
        found = [json.loads(line) for line in text.splitlines() if line.strip()]
    return [
        parse_signed({"entry": e["entry"], "sigs": e["sigs"]}, seq) for seq, e in enumerate(found)
    ]


def number(view: LogView, entity_id: str, sig_pub: str, suite: Any) -> str:
    """The safety number of an agent (by agent id) or a device (by its user's id)."""
    raw = keys.public_raw(keys.load_verify_key(suite, sig_pub))
    groups = safety_number(b64u_decode(view.genesis_hash, max_bytes=32), entity_id, raw)
    return format_safety_number(groups)


def report(view: LogView) -> list[str]:
    """The lines printed for a verified log."""
    lines = [
        f'Workspace "{view.name}" ({view.ws}) · genesis {view.genesis_hash}',
        f"Head: #{view.head.seq} {view.head.hash} · content {view.policy.content}",
        "Members:",
    ]
    lines += [f"  {m.name} ({m.user_id}): {m.role}" for m in view.members.values()]
    lines.append("Devices:")
    for d in view.devices.values():
        state = "live" if d.active else f"revoked at #{d.revoked_seq}"
        lines.append(f"  {d.label} ({d.device_id}, {d.user_id}, {state})")
        lines.append(f"    {number(view, d.user_id, d.sig_pub, d.suite)}")
    lines.append("Agents:")
    for a in view.agents.values():
        state = "live" if a.active else f"revoked at #{a.revoked_seq}"
        lines.append(f"  {a.label} ({a.agent_id}, {state})")
        lines.append(f"    {number(view, a.agent_id, a.sig_pub, a.suite)}")
    return lines


@click.command("verify-log")
@click.argument("log_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--genesis-hash", help="the genesis hash you noted (pins the log's start)")
@click.option(
    "--agent-audit",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="an agent's audit log (stateDir/audit-log.jsonl) to check too",
)
@click.option("--agent", "agent_id", help="whose audit log it is (needed with several agents)")
def verify_log_command(
    log_file: Path, genesis_hash: str | None, agent_audit: Path | None, agent_id: str | None
) -> None:
    """Verify a workspace's membership log (and an agent's audit log) offline."""
    try:
        view = verify_log(read_entries(log_file), pinned=genesis_hash)
    except (LogError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"the log does not verify: {exc}") from None
    for line in report(view):
        click.echo(line)
    if agent_audit is None:
        return
    agents = [a for a in view.agents.values() if agent_id in (None, a.agent_id)]
    if len(agents) != 1:
        raise click.ClickException("name the agent whose audit log this is (--agent)")
    key = keys.load_verify_key(agents[0].suite, agents[0].sig_pub)
    result = verify_audit(agent_audit.read_bytes().splitlines(keepends=True), key)
    if not result.ok:
        where = f" at line {result.line}" if result.line else ""
        reason = result.reason.value if result.reason else "broken"
        raise click.ClickException(f"the audit log of {agents[0].agent_id} is {reason}{where}")
    click.echo(
        f"Audit log of {agents[0].agent_id}: {result.records} records, "
        f"head #{result.head.seq} {result.head.hash}"
    )
