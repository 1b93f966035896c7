"""Command line for the audit trail (B2): ``relay audit export|public-key`` (needs the
relay's config and key) and ``audit verify`` (needs neither: only a public key)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

import click

from codexrelay import auditverify
from codexrelay.cliconfig import fail, load_relay_or_exit
from codexrelay.fileio import PRIVATE_FILE, fsync_dir
from codexrelay.relay.audit.keys import Signer, ensure_signer, load_signer, signing_key_path
from codexrelay.relay.audit.reading import ExportScope, bundle
from codexrelay.relay.audit.trail import AUDIT_DIR_NAME
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.storage.errors import StateError


def init_key(config: RelayConfig) -> Signer:
    """Make the audit signing key at ``relay init`` (kept if one exists: the chain goes on)."""
    signer, _created = ensure_signer(config.data_path)
    return signer


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use an ISO 8601 time, e.g. 2026-11-01T00:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


def write_bundle(
    lines: Iterable[bytes], out: Path, *, force: bool
) -> tuple[int, dict[str, object]]:
    """Write the bundle whole or not at all (temp file, fsync, rename), mode 0600.

    Returns the number of lines and the manifest.
    """
    if out.exists() and not force:
        msg = f"{out} exists; pass --force to replace it"
        raise FileExistsError(msg)
    directory = out.resolve().parent
    tmp = directory / f".{out.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    count, last = 0, b""
    try:
        with os.fdopen(fd, "wb") as fh:
            for line in lines:
                fh.write(line)
                count, last = count + 1, line
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(out)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(directory)
    return count, json.loads(last)["manifest"]


@click.group("audit")
def relay_audit() -> None:
    """The relay's signed, hash-chained audit trail (B2)."""


@relay_audit.command("export")
@click.option("--since", help="First record time (ISO 8601); default: from the start.")
@click.option("--workspace", help='Only this workspace\'s chain (or "instance").')
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Bundle file to write (JSON lines, mode 0600).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
def export_command(
    config_path: Path, since: str | None, workspace: str | None, out: Path, force: bool
) -> None:
    """Write a signed export bundle (safe while the relay runs)."""

    config = load_relay_or_exit(config_path)
    scope = ExportScope(workspace=workspace, since=_parse_time(since))
    try:
        signer = load_signer(config.data_path)
        lines = bundle(
            config.data_path / AUDIT_DIR_NAME,
            signer,
            scope,
            upto=None,
            now=datetime.now(UTC),
        )
        _, manifest = write_bundle(lines, out, force=force)
    except (StateError, OSError) as exc:
        fail(str(exc))
        return
    span = f"seq {manifest['firstSeq']}..{manifest['lastSeq']}" if manifest["count"] else "empty"
    click.echo(f"Wrote {out} (mode 0600): {manifest['count']} records, {span}.")
    click.echo(f"Verify with: codexrelay audit verify {out} --public-key {signer.public_text}")


@relay_audit.command("public-key")
def public_key_command(config_path: Path) -> None:
    """Print the audit public key (give it to whoever verifies exports)."""

    config = load_relay_or_exit(config_path)
    try:
        signer = load_signer(config.data_path)
    except StateError as exc:
        fail(str(exc))
        return
    click.echo(signer.public_text)
    click.echo(
        f"key id {signer.key_id}; private key {signing_key_path(config.data_path)}", err=True
    )


@click.group("audit")
def audit() -> None:
    """Check audit trails offline; no relay config needed (B2)."""


@audit.command("verify")
@click.argument("bundle_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Verify the relay's on-disk chain (dataDir/audit) instead of a bundle.",
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    required=True,
    help="The relay's audit public key (base64, hex or PEM), or a file holding it.",
)
@click.option(
    "--allow-partial-start",
    is_flag=True,
    help="Accept a directory whose oldest files were archived elsewhere.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--expect-head",
    help="SEQ:HASH of a head noted earlier (the phone shows it): records cut from the end, "
    "or a rewritten head, fail the check.",
)
@click.option(
    "--agent-log",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Verify an agent's own audit log (stateDir/audit.jsonl) with the agent's key.",
)
def verify_command(
    bundle_file: Path | None,
    directory: Path | None,
    public_keys: tuple[str, ...],
    allow_partial_start: bool,
    as_json: bool,
    expect_head: str | None,
    agent_log: Path | None,
) -> None:
    """Check signatures, hash chain and sequence; report the first broken record.

    Exit status: 0 verified, 1 broken or tampered, 2 bad usage or unreadable key.
    """
    sys.exit(
        auditverify.run(
            bundle_file,
            directory=directory,
            key_specs=public_keys,
            allow_partial_start=allow_partial_start,
            as_json=as_json,
            expect_head=expect_head,
            agent_log=agent_log,
        )
    )
