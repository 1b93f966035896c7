"""``codexrelay relay snapshot``: preserve the relay's state for analysis before deleting it (I4).

Safe while the relay runs, with no lock and no pause. The SQLite database is copied with
SQLite's online backup (one consistent version, never a file copy that could tear across
the WAL); the JSON backend replaces ``state.json`` only by rename, so one plain read gets a
whole version. The snapshot is a gzip'd tar, mode 0600, holding that store file
(``relay.sqlite3`` or ``state.json``), the config with ``tokenSecret`` masked, the audit
trail (``audit/`` and the public key, never the private one), a ``manifest.json`` (time,
schema version, counts, sha256 of each file) and ``SHA256SUMS`` for ``sha256sum -c``. A
corrupt or unknown-version store is preserved too, byte for byte, flagged in the manifest:
that is exactly when someone will want to look at it. ``relay restore`` puts one back.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import sqlite3
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from codexrelay import __version__
from codexrelay.cliconfig import fail, load_relay_or_exit
from codexrelay.fileio import PRIVATE_FILE, write_private_file
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.inspection import COUNTED, backup_database, check_database
from codexrelay.relay.storage.jsonfile import encode_state
from codexrelay.relay.storage.records import SCHEMA_VERSION, State
from codexrelay.relay.storage.schema import SCHEMA_VERSION as DATABASE_SCHEMA_VERSION

FORMAT = "codexrelay-snapshot/1"
DATABASE_ENTRY = "relay.sqlite3"
STATE_ENTRY = "state.json"


class SnapshotError(Exception):
    """There is nothing to preserve (or the output cannot be written)."""


def inspect_state(data: bytes) -> dict[str, Any]:
    """What the manifest says about the state bytes: version, instance, counts, or the problem."""
    info: dict[str, Any] = {"valid": False, "problem": None, "schemaVersion": None}
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        info["problem"] = f"not valid JSON: {exc}"
        return info
    if not isinstance(raw, dict):
        info["problem"] = "not a JSON object"
        return info
    info["schemaVersion"] = raw.get("schemaVersion")
    info["instanceId"] = raw.get("instanceId")
    if raw.get("schemaVersion") != SCHEMA_VERSION:
        info["problem"] = f"schemaVersion is not the supported version {SCHEMA_VERSION}"
        return info
    try:
        state = State.model_validate(raw)
    except ValidationError as exc:
        info["problem"] = f"does not match the state schema ({exc.error_count()} problems)"
        return info
    info["valid"] = True
    info["counts"] = {name: len(getattr(state, name)) for name in COUNTED}
    return info


def masked_config(config: RelayConfig) -> bytes:
    """The relay config as JSON with ``tokenSecret`` masked (its serializer hides it)."""
    data = config.model_dump(mode="json", by_alias=True)
    return (json.dumps(data, indent=2) + "\n").encode("utf-8")


def _file_entry(data: bytes) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def audit_files(data_dir: Path) -> list[tuple[str, Path]]:
    """The audit trail (``audit/``) and the public half of its key, never the private key."""
    found = [(p.name, p) for p in sorted(data_dir.glob("*.pub")) if p.is_file()]
    audit = data_dir / "audit"
    if audit.is_dir():
        found += [
            (str(p.relative_to(data_dir)), p)
            for p in sorted(audit.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        ]
    return found


def read_state_bytes(path: Path) -> bytes:
    """One read of a file the store replaces only by rename: always one whole version."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        msg = f"{path} does not exist: this relay has no state to preserve"
        raise SnapshotError(msg) from None
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}"
        raise SnapshotError(msg) from None


def inspect_database(data: bytes, scratch: Path) -> dict[str, Any]:
    """What the manifest says about a database copy: version and counts, or the problem."""
    scratch.write_bytes(data)
    try:
        report = check_database(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    info: dict[str, Any] = {"valid": not report.problems, "schemaVersion": report.schema_version}
    info["problem"] = "; ".join(report.problems) or None
    if not report.problems:
        info["counts"] = report.counts
    return info


def store_entry(config: RelayConfig) -> tuple[str, bytes, dict[str, Any]]:
    """The store file to preserve (its name in the archive, its bytes, what it holds)."""
    db = config.database_path
    if config.storage.backend == "postgres":
        # The whole database as one state document, read in one consistent transaction.
        from codexrelay.relay.storage.pginspect import read_pg_database  # noqa: PLC0415

        try:
            data = encode_state(read_pg_database(config.storage.url or ""))
        except StateError as exc:
            raise SnapshotError(str(exc)) from None
        return STATE_ENTRY, data, inspect_state(data)
    if config.storage.backend == "sqlite" and db.exists():
        copy = db.with_name(f".{db.name}.snapshot")
        try:
            backup_database(db, copy)
            data = copy.read_bytes()
        except (sqlite3.DatabaseError, StateError):
            data = read_state_bytes(db)  # unusable: keep its bytes exactly as they are
        finally:
            copy.unlink(missing_ok=True)
        return DATABASE_ENTRY, data, inspect_database(data, copy)
    data = read_state_bytes(config.state_path)
    return STATE_ENTRY, data, inspect_state(data)


def build_archive(config: RelayConfig, *, now: datetime) -> tuple[bytes, dict[str, Any]]:
    """The gzip'd tar and its manifest. Raises ``SnapshotError`` if there is no state.

    Audit files are append-only, so each read is a prefix of the trail that the offline
    verifier accepts (a line being appended at that instant shows as torn, as after a crash).
    """
    store_name, state, info = store_entry(config)
    entries: dict[str, dict[str, Any]] = {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(f"relay-snapshot/{name}")
            info.size = len(data)
            info.mode = PRIVATE_FILE
            info.mtime = int(now.timestamp())
            archive.addfile(info, io.BytesIO(data))
            entries[name] = _file_entry(data)

        add(store_name, state)
        add("relay-config.json", masked_config(config))
        for name, path in audit_files(config.data_path):
            add(name, path.read_bytes())
        manifest = {
            "format": FORMAT,
            "createdAt": now.isoformat().replace("+00:00", "Z"),
            "codexrelayVersion": __version__,
            "host": socket.gethostname(),
            "statePath": str(config.data_path / store_name),
            "store": {"backend": config.storage.backend, "file": store_name},
            "supportedSchemaVersion": (
                DATABASE_SCHEMA_VERSION if store_name == DATABASE_ENTRY else SCHEMA_VERSION
            ),
            "state": info,
            "files": dict(entries),
        }
        add("manifest.json", (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        sums = "".join(f"{e['sha256']}  {n}\n" for n, e in entries.items())
        add("SHA256SUMS", sums.encode("utf-8"))
    return buffer.getvalue(), manifest


def write_snapshot(config: RelayConfig, out: Path, *, force: bool) -> dict[str, Any]:
    """Write the snapshot, 0600; refuses to replace an existing file without ``force``."""
    if out.exists() and not force:
        msg = f"{out} already exists; pass --force to replace it"
        raise SnapshotError(msg)
    archive, manifest = build_archive(config, now=datetime.now(UTC))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(out, archive)  # 0600, atomic and durable
    return manifest


def describe(manifest: dict[str, Any]) -> str:
    """One line about what was preserved."""
    state = manifest["state"]
    name = manifest["store"]["file"]
    digest = manifest["files"][name]["sha256"]
    if not state["valid"]:
        return f"{name} sha256 {digest}; WARNING: the state is unusable ({state['problem']})"
    counts = ", ".join(f"{n} {table}" for table, n in state["counts"].items())
    return f"{name} sha256 {digest}, schema version {state['schemaVersion']}: {counts}"


@click.command("snapshot")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Snapshot file to write (a .tar.gz, mode 0600).",
)
@click.option("--force", is_flag=True, help="Replace an existing snapshot file.")
def snapshot_command(config_path: Path, out: Path, force: bool) -> None:
    """Copy the relay's state (safe while it runs) for analysis before deleting it (I4)."""

    config = load_relay_or_exit(config_path)
    try:
        manifest = write_snapshot(config, out, force=force)
    except (SnapshotError, OSError) as exc:
        fail(str(exc))
        return
    click.echo(f"Wrote {out} (mode 0600).")
    click.echo(describe(manifest))
    click.echo(
        "Keep it private: it holds hashes of sessions and agent tokens and every user's name.",
        err=True,
    )
