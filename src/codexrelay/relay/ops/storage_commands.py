"""``codexrelay relay check`` and ``relay restore``: is the store sound, and put a snapshot back.

``check`` reads the store read-only (safe while the relay runs): SQLite's integrity check,
the schema version, and every record validated. ``restore`` needs the relay stopped (it
takes the data dir's lock), verifies the snapshot's checksums and its store file first, and
moves the current store files aside (renamed, never deleted) before putting the snapshot's
in place. The audit trail is never touched: it is append-only and signed, and rolling it
back would hide what happened since.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from codexrelay.cliconfig import fail, load_relay_or_exit
from codexrelay.fileio import fsync_dir, write_private_file
from codexrelay.relay.config import RelayConfig
from codexrelay.relay.ops.snapshot import DATABASE_ENTRY, FORMAT, STATE_ENTRY, inspect_state
from codexrelay.relay.storage.errors import StateError
from codexrelay.relay.storage.inspection import CheckReport, check_database, read_database
from codexrelay.relay.storage.jsonfile import encode_state, lock_data_dir, read_state
from codexrelay.relay.storage.schema import SCHEMA_VERSION

STORE_FILES = ("relay.sqlite3", "relay.sqlite3-wal", "relay.sqlite3-shm", "state.json")


def check_store(config: RelayConfig) -> tuple[str, CheckReport]:
    """What is in the data dir and whether it is sound: (which file, report)."""
    db, state_path = config.database_path, config.state_path
    if config.storage.backend == "postgres":
        from codexrelay.relay.storage.pgdb import redact_url  # noqa: PLC0415
        from codexrelay.relay.storage.pginspect import check_pg_database  # noqa: PLC0415

        url = config.storage.url or ""
        return redact_url(url), check_pg_database(url)
    if config.storage.backend == "sqlite" and db.exists():
        return str(db), check_database(db)
    report = CheckReport()
    if not state_path.exists():
        report.problems.append("no state yet: the relay creates it at its first start")
        return str(state_path), report
    try:
        state = read_state(state_path)
    except StateError as exc:
        report.problems.append(str(exc))
        return str(state_path), report
    assert state is not None  # noqa: S101 - it exists
    report.schema_version = state.schema_version
    report.counts = inspect_state(state_path.read_bytes()).get("counts", {})
    return str(state_path), report


def describe_storage(config: RelayConfig) -> str:
    """One line for ``check-config``: backend, file, schema version."""
    backend = config.storage.backend
    if backend == "postgres":
        return _describe_postgres(config)
    if backend == "sqlite" and config.database_path.exists():
        _, report = check_store(config)
        version = report.schema_version
        state = "current" if version == SCHEMA_VERSION else f"this release uses {SCHEMA_VERSION}"
        return f"storage: sqlite at {config.database_path}, schema version {version} ({state})"
    if backend == "sqlite":
        pending = " (state.json will be moved in)" if config.state_path.exists() else ""
        return (
            f"storage: sqlite at {config.database_path}, not created yet{pending}; "
            f"schema version {SCHEMA_VERSION} at first start"
        )
    return f"storage: json at {config.state_path}"


def _describe_postgres(config: RelayConfig) -> str:
    from codexrelay.relay.storage.pgdb import redact_url  # noqa: PLC0415
    from codexrelay.relay.storage.pgschema import PG_SCHEMA_VERSION  # noqa: PLC0415

    where, report = check_store(config)
    if report.problems and report.schema_version is None:
        return f"storage: postgres at {where}: {report.problems[0]}"
    version = report.schema_version
    if version == 0:
        return (
            f"storage: postgres at {redact_url(config.storage.url or '')}, empty; "
            f"schema version {PG_SCHEMA_VERSION} at first start"
        )
    state = "current" if version == PG_SCHEMA_VERSION else f"this release uses {PG_SCHEMA_VERSION}"
    return f"storage: postgres at {where}, schema version {version} ({state})"


@click.command("check")
def check_command(config_path: Path) -> None:
    """Check the relay's stored state: integrity, schema version, every record (read-only)."""
    config = load_relay_or_exit(config_path)
    where, report = check_store(config)
    for problem in report.problems:
        click.echo(f"{where}: {problem}", err=True)
    if report.problems:
        fail(f"{where}: {len(report.problems)} problem(s)")
    counts = ", ".join(f"{n} {name}" for name, n in report.counts.items())
    click.echo(f"{where}: ok, schema version {report.schema_version}: {counts}")


def read_snapshot(path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The manifest and files of a snapshot, every checksum verified. Raises ``StateError``."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:gz") as archive:
            for info in archive.getmembers():
                extracted = archive.extractfile(info) if info.isfile() else None
                if extracted is not None:
                    files[info.name.removeprefix("relay-snapshot/")] = extracted.read()
    except (OSError, tarfile.TarError) as exc:
        msg = f"{path}: not a readable snapshot ({exc})"
        raise StateError(msg) from None
    manifest = json.loads(files.get("manifest.json", b"{}"))
    if manifest.get("format") != FORMAT:
        msg = f"{path}: not a codexrelay snapshot ({FORMAT})"
        raise StateError(msg)
    for name, entry in manifest["files"].items():
        if hashlib.sha256(files.get(name, b"")).hexdigest() != entry["sha256"]:
            msg = f"{path}: {name} does not match its checksum; the snapshot is damaged"
            raise StateError(msg)
    return manifest, files


def restored_file(config: RelayConfig, files: dict[str, bytes]) -> tuple[str, bytes]:
    """The store file to write for this relay's backend, validated. Raises ``StateError``."""
    data_dir = config.data_path
    if DATABASE_ENTRY in files:
        scratch = data_dir / f".{DATABASE_ENTRY}.restoring"
        scratch.write_bytes(files[DATABASE_ENTRY])
        scratch.chmod(0o600)
        try:
            report = check_database(scratch)
            if report.problems:
                raise StateError("the snapshot's database is unusable: " + report.problems[0])
            if config.storage.backend == "json":
                return STATE_ENTRY, encode_state(read_database(scratch))
        finally:
            scratch.unlink(missing_ok=True)
        return DATABASE_ENTRY, files[DATABASE_ENTRY]
    if STATE_ENTRY not in files:
        msg = "the snapshot holds no store file"
        raise StateError(msg)
    info = inspect_state(files[STATE_ENTRY])
    if not info["valid"]:
        raise StateError("the snapshot's state.json is unusable: " + str(info["problem"]))
    # With the SQLite backend, the next start moves it into a new database.
    return STATE_ENTRY, files[STATE_ENTRY]


def restore_postgres(config: RelayConfig, files: dict[str, bytes]) -> str:
    """Make the database hold the snapshot's state (every relay instance stopped)."""
    from codexrelay.relay.storage.pginspect import replace_pg_state  # noqa: PLC0415

    data_dir = config.data_path
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    name, data = restored_file(config, files)
    scratch = data_dir / f".{name}.restoring"
    write_private_file(scratch, data)
    try:
        state = read_database(scratch) if name == DATABASE_ENTRY else read_state(scratch)
    finally:
        scratch.unlink(missing_ok=True)
    if state is None:
        msg = "the snapshot holds no store file"
        raise StateError(msg)
    counts = replace_pg_state(config.storage.url or "", state)
    return ", ".join(f"{n} {table}" for table, n in counts.items() if n)


def restore(config: RelayConfig, snapshot: Path, *, now: datetime) -> tuple[str, list[str]]:
    """Put a snapshot's store back; returns the file written and what was moved aside."""
    _, files = read_snapshot(snapshot)
    if config.storage.backend == "postgres":
        return "the database", [restore_postgres(config, files)]
    data_dir = config.data_path
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_fd = lock_data_dir(data_dir)  # StateError while a relay runs on this data dir
    try:
        name, data = restored_file(config, files)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        moved = []
        for current in STORE_FILES:
            path = data_dir / current
            if path.exists():
                path.rename(data_dir / f"{current}.before-restore-{stamp}")
                moved.append(f"{current}.before-restore-{stamp}")
        fsync_dir(data_dir)
        write_private_file(data_dir / name, data)
    finally:
        os.close(lock_fd)
    return name, moved


@click.command("restore")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A snapshot written by `codexrelay relay snapshot`.",
)
def restore_command(config_path: Path, source: Path) -> None:
    """Put a snapshot's state back (stop the relay first); the audit trail is kept as is."""
    config = load_relay_or_exit(config_path)
    try:
        name, moved = restore(config, source, now=datetime.now(UTC))
    except (StateError, OSError) as exc:
        fail(str(exc))
        return
    if config.storage.backend == "postgres":
        click.echo(f"Restored the database from {source}: {moved[0]}.")
        click.echo("The audit trail was not changed. Start the relays to use the restored state.")
        return
    for aside in moved:
        click.echo(f"Moved the current {aside.split('.before-restore-')[0]} aside as {aside}.")
    click.echo(f"Restored {config.data_path / name} from {source}.")
    click.echo("The audit trail was not changed. Start the relay to use the restored state.")
