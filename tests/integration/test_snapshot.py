"""`codexrelay relay snapshot`: a consistent, private copy of relay state for analysis before
deleting it (I4), taken while the relay runs and writes."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from codexrelay.relay.config import load_relay_config
from codexrelay.relay.ops.snapshot import write_snapshot
from codexrelay.relay.storage.records import SCHEMA_VERSION, State
from tests.agents import default_workspace
from tests.helpers import PYTHON, RelayProcess, write_relay_config


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
    State.model_validate_json(files["state.json"])
    return manifest


def test_snapshot_while_the_relay_writes(tmp_path):
    """I4: snapshots taken during a burst of state writes are each one whole, valid version,
    0600, with a manifest (time, schema version, sha256) and no secret in clear."""
    setup = write_relay_config(tmp_path / "relay")
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
            digests.add(manifest["files"]["state.json"]["sha256"])
            assert manifest["format"] == "codexrelay-snapshot/1"
            assert manifest["state"]["valid"] is True
            assert manifest["state"]["schemaVersion"] == SCHEMA_VERSION
            assert manifest["state"]["counts"]["users"] == 1
            assert manifest["createdAt"].endswith("Z")
            if i == 0:
                assert manifest["files"]["state.json"]["sha256"] in res.stdout
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
