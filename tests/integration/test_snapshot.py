"""`codexrelay relay snapshot`: a consistent, private copy of relay state for analysis before
deleting it (I4), taken while the relay runs and writes."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import stat
import subprocess
import tarfile
import tempfile
import threading
from pathlib import Path

import pytest

from codexrelay.relay.config import load_relay_config
from codexrelay.relay.ops.snapshot import write_snapshot
from codexrelay.relay.storage.inspection import read_database
from codexrelay.relay.storage.records import State
from tests.agents import default_workspace
from tests.helpers import PYTHON, RelayProcess, both_backends, write_relay_config


def snapshot(config: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [PYTHON, "-m", "codexrelay", "relay", "snapshot", "--config", str(config)]
    return subprocess.run(
        [*command, "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def members(path: Path) -> dict[str, bytes]:
    """The snapshot's files by name."""
    with tarfile.open(path, "r:gz") as archive:
        found = {}
        for info in archive.getmembers():
            assert info.isfile()
            assert stat.S_IMODE(info.mode) == 0o600
            extracted = archive.extractfile(info)
            assert extracted is not None
            found[info.name.removeprefix("relay-snapshot/")] = extracted.read()
        return found


def check_consistent(files: dict[str, bytes]) -> dict:
    """Every digest matches, the state parses as a whole State; returns the manifest."""
    manifest = json.loads(files["manifest.json"])
    for name, entry in manifest["files"].items():
        assert hashlib.sha256(files[name]).hexdigest() == entry["sha256"], name
        assert len(files[name]) == entry["bytes"]
    for line in files["SHA256SUMS"].decode().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256(files[name]).hexdigest() == digest
    store = manifest["store"]["file"]
    if store == "state.json":
        State.model_validate_json(files["state.json"])
    else:
        scratch = Path(tempfile.mkdtemp()) / "copy.sqlite3"
        scratch.write_bytes(files[store])
        read_database(scratch)  # raises if it is not one whole, valid database
        shutil.rmtree(scratch.parent)
    return manifest


@both_backends
def test_snapshot_while_the_relay_writes(tmp_path, store_backend, storage_settings):
    """I4: snapshots taken during a burst of state writes are each one whole, valid version,
    0600, with a manifest (time, schema version, sha256) and no secret in clear."""
    setup = write_relay_config(tmp_path / "relay", storage=storage_settings)
    store = "relay.sqlite3" if store_backend == "sqlite" else "state.json"
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    stop = threading.Event()
    writes = 0
    try:
        phone = relay.login()
        wid = default_workspace(phone)

        def churn() -> None:
            nonlocal writes
            while not stop.is_set():
                res = phone.post(f"/api/v1/workspaces/{wid}/pairings", json={"note": "x" * 150})
                assert res.status_code == 201
                writes += 1

        writer = threading.Thread(target=churn)
        writer.start()
        digests = set()
        config = load_relay_config(setup.config_path)
        for i in range(20):
            out = tmp_path / f"snap-{i}.tar.gz"
            if i == 0:  # the command itself once; the library call (same code) for the rest
                res = snapshot(setup.config_path, out)
                assert res.returncode == 0, res.stderr
            else:
                write_snapshot(config, out, force=False)
            assert stat.S_IMODE(out.stat().st_mode) == 0o600
            files = members(out)
            manifest = check_consistent(files)
            assert manifest["store"] == {"backend": store_backend, "file": store}
            digests.add(manifest["files"][store]["sha256"])
            assert manifest["format"] == "codexrelay-snapshot/1"
            assert manifest["state"]["valid"] is True
            assert manifest["state"]["schemaVersion"] == manifest["supportedSchemaVersion"]
            assert manifest["state"]["counts"]["users"] == 1
            assert manifest["createdAt"].endswith("Z")
            if i == 0:
                assert manifest["files"][store]["sha256"] in res.stdout
            secret = setup.config()["tokenSecret"]
            for data in files.values():
                assert secret.encode() not in data
                assert setup.token.encode() not in data
            masked = json.loads(files["relay-config.json"])
            assert masked["publicOrigin"] == setup.origin
            assert masked["tokenSecret"] == "**********"
        stop.set()
        writer.join(timeout=30)
        phone.close()
    finally:
        stop.set()
        relay.stop()
    assert writes > 0
    assert len(digests) > 1, "the state changed between snapshots"


def test_snapshot_refuses_to_overwrite_and_reports_missing_state(tmp_path):
    """An existing snapshot is kept unless --force; a relay without state says so (exit 1)."""
    setup = write_relay_config(tmp_path / "relay")
    out = tmp_path / "snap.tar.gz"
    missing = snapshot(setup.config_path, out)
    assert missing.returncode == 1
    assert "no state to preserve" in missing.stderr
    assert not out.exists()
    setup.data_dir.mkdir(mode=0o700)
    state = State(instance_id="inst_x", created_at="2026-01-01T00:00:00Z")  # type: ignore[arg-type]
    setup.state_path.write_text(state.model_dump_json(by_alias=True))
    assert snapshot(setup.config_path, out).returncode == 0
    first = out.read_bytes()
    again = snapshot(setup.config_path, out)
    assert again.returncode == 1
    assert "--force" in again.stderr
    assert out.read_bytes() == first
    assert snapshot(setup.config_path, out, "--force").returncode == 0


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'{"schemaVersion": 1, "users": ', "not valid JSON"),
        (b'{"schemaVersion": 99}', "schemaVersion"),
    ],
)
def test_snapshot_preserves_an_unusable_state_file(tmp_path, content, problem):
    """A corrupt or unknown-version state is exactly what needs preserving: its bytes are
    kept as they are and the manifest says what is wrong."""
    setup = write_relay_config(tmp_path / "relay")
    setup.data_dir.mkdir(mode=0o700)
    setup.state_path.write_bytes(content)
    out = tmp_path / "snap.tar.gz"
    res = snapshot(setup.config_path, out)
    assert res.returncode == 0, res.stderr
    assert "WARNING" in res.stdout
    files = members(out)
    assert files["state.json"] == content
    manifest = json.loads(files["manifest.json"])
    assert manifest["state"]["valid"] is False
    assert problem in manifest["state"]["problem"]
    assert manifest["files"]["state.json"]["sha256"] == hashlib.sha256(content).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(out.read_bytes())) as archive:
        assert "relay-snapshot/SHA256SUMS" in archive.getnames()


def test_snapshot_keeps_the_audit_trail_but_never_the_signing_key(tmp_path):
    """The audit files and the public key go into the snapshot for analysis; the private
    signing key in dataDir, the lock file and temporary files do not."""
    setup = write_relay_config(tmp_path / "relay")
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    relay.login().close()
    relay.stop()
    data = setup.data_dir
    (data / "audit").mkdir(exist_ok=True)
    (data / "audit" / "000000000001-000.jsonl").write_text('{"seq": 1}\n')
    (data / "audit" / ".partial.tmp").write_text("x")
    (data / "extra-signing-key.pem").write_text("PRIVATE")
    (data / "extra-signing-key.pub").write_text("PUBLIC")
    out = tmp_path / "snap.tar.gz"
    res = snapshot(setup.config_path, out)
    assert res.returncode == 0, res.stderr
    files = members(out)
    manifest = check_consistent(files)
    assert files["audit/000000000001-000.jsonl"] == b'{"seq": 1}\n'
    assert files["extra-signing-key.pub"] == b"PUBLIC"
    assert set(manifest["files"]) == set(files) - {"manifest.json", "SHA256SUMS"}
    for name, content in files.items():
        assert not name.endswith((".pem", ".lock", ".tmp")), name
        assert b"PRIVATE" not in content


def relay_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", "relay", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@both_backends
def test_restore_puts_a_snapshot_back(tmp_path, store_backend, storage_settings):
    """I4: restore needs the relay stopped, verifies the snapshot, moves the current store
    aside and brings back exactly the snapshot's records; `relay check` agrees."""
    setup = write_relay_config(tmp_path / "relay", storage=storage_settings)
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    phone = relay.login()
    kept = phone.post("/api/v1/workspaces", json={"name": "Kept"}).json()["workspace"]["id"]
    out = tmp_path / "snap.tar.gz"
    assert snapshot(setup.config_path, out).returncode == 0
    later = phone.post("/api/v1/workspaces", json={"name": "Later"}).json()["workspace"]["id"]
    phone.close()
    refused = relay_cli(setup.config_path, "restore", "--from", str(out))
    assert refused.returncode == 1
    running = "still use" if store_backend == "postgres" else "in use by another relay process"
    assert running in refused.stderr
    relay.stop()
    res = relay_cli(setup.config_path, "restore", "--from", str(out))
    assert res.returncode == 0, res.stderr
    moved = "Restored the database" if store_backend == "postgres" else "Moved the current"
    assert moved in res.stdout
    assert "audit trail was not changed" in res.stdout
    state = setup.stored_state()
    assert kept in state.workspaces
    assert later not in state.workspaces
    checked = relay_cli(setup.config_path, "check")
    assert checked.returncode == 0, checked.stderr
    assert "ok, schema version" in checked.stdout
    relay.start()
    again = relay.login()
    names = {w["name"] for w in again.get("/api/v1/workspaces").json()["workspaces"]}
    again.close()
    relay.stop()
    assert "Kept" in names
    assert "Later" not in names


def test_restore_refuses_a_damaged_snapshot(tmp_path):
    """A snapshot whose store does not match its checksum changes nothing."""
    setup = write_relay_config(tmp_path / "relay")
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    relay.login().close()
    out = tmp_path / "snap.tar.gz"
    assert snapshot(setup.config_path, out).returncode == 0
    relay.stop()
    files = members(out)
    files["relay.sqlite3"] = files["relay.sqlite3"][:-10] + b"0123456789"
    damaged = tmp_path / "damaged.tar.gz"
    with tarfile.open(damaged, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"relay-snapshot/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    before = setup.stored_bytes()
    res = relay_cli(setup.config_path, "restore", "--from", str(damaged))
    assert res.returncode == 1
    assert "checksum" in res.stderr
    assert setup.stored_bytes() == before


def test_check_finds_a_damaged_database(tmp_path):
    """`relay check` reports a database whose pages were overwritten, and exits 1."""
    setup = write_relay_config(tmp_path / "relay")
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    phone = relay.login()
    for i in range(30):
        phone.post("/api/v1/workspaces", json={"name": f"w{i}" * 40})
    phone.close()
    relay.stop()
    path = setup.data_dir / "relay.sqlite3"
    data = bytearray(path.read_bytes())
    data[4096 : 4096 * 3] = b"\xff" * (4096 * 2)  # clobber pages 2 and 3
    path.write_bytes(bytes(data))
    res = relay_cli(setup.config_path, "check")
    assert res.returncode == 1
    assert "problem" in res.stderr
