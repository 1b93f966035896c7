"""The audit trail against a real relay process: a SIGKILL in the middle of a burst of
audited requests, export and verification from the command line in a clean environment,
and task canaries kept out of the trail with a real agent (B2, O4, R10)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from pathlib import Path

import httpx

from codexrelay.auditverify import chain_files, iter_dir, parse_public_key, verify_dir
from tests.agents import default_workspace
from tests.helpers import PYTHON, RelayProcess, wait_until
from tests.integration.conftest import World, run

BURST_ACKS = 60
WORKERS = 4


def _records(audit_dir: Path) -> list[dict]:
    return [json.loads(line) for _, _, line, _ in iter_dir(audit_dir) if line is not None]


def _key(relay: RelayProcess) -> object:
    return parse_public_key((relay.setup.data_dir / "audit-signing-key.pub").read_text())


def _burst(relay: RelayProcess, phone: httpx.Client, wid: str) -> tuple[list[str], int]:
    """Create invites from several threads until SIGKILL; the ids the relay acknowledged,
    and how many requests were cut off without an answer."""
    acknowledged: list[str] = []
    cut = [0]
    lock = threading.Lock()

    def worker() -> None:
        with relay.client(cookies=phone.cookies) as client:
            while True:
                try:
                    res = client.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"})
                except httpx.HTTPError:
                    with lock:
                        cut[0] += 1
                    return
                assert res.status_code == 201, res.text
                with lock:
                    acknowledged.append(res.json()["invite"]["id"])

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= BURST_ACKS, timeout=60, what="a burst of invites")
    relay.kill()
    for thread in threads:
        thread.join(timeout=30)
    return acknowledged, cut[0]


def test_sigkill_during_a_burst_leaves_a_chain_that_verifies(relay):
    """B2: after a SIGKILL mid-burst the on-disk chain verifies up to its last complete
    record, every acknowledged request's record is in it (durable before the answer), a
    torn last line is reported while the rest verifies, and the next start records the
    recovery and carries the chain on."""
    phone = relay.login()
    wid = default_workspace(phone)
    audit_dir = relay.setup.data_dir / "audit"
    acknowledged, cut = _burst(relay, phone, wid)
    assert cut == WORKERS

    report = verify_dir(audit_dir, [_key(relay)])
    assert report.ok, report.lines()
    recorded = {
        r["target"]["inviteId"] for r in _records(audit_dir) if r["event"] == "invite.created"
    }
    missing = set(acknowledged) - recorded
    assert not missing, f"{len(missing)} answered requests have no durable record"

    torn = b'{"actor":{"session":"00","type":"user"'
    with chain_files(audit_dir)[-1].open("ab") as fh:
        fh.write(torn)
    report = verify_dir(audit_dir, [_key(relay)])
    assert report.ok, report.lines()
    assert any("torn final line" in w for w in report.warnings), report.warnings
    last_seq = report.last_seq

    relay.start()
    relay.login(relay.client()).close()
    report = verify_dir(audit_dir, [_key(relay)])
    assert report.ok, report.lines()
    after = [r for r in _records(audit_dir) if r["seq"] > last_seq]
    assert [r["event"] for r in after[:2]] == ["audit.recovered", "relay.started"]
    assert after[0]["target"]["tornBytes"] >= len(torn)  # the kill may have torn one too
    assert after[0]["prev"] == next(r["hash"] for r in _records(audit_dir) if r["seq"] == last_seq)
    assert after[-1]["event"] == "auth.bootstrap.login"
    phone.close()


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PYTHON, "-m", *args], capture_output=True, text=True, timeout=60, check=False, **kwargs
    )


def test_export_and_offline_verify_from_the_command_line(relay, tmp_path):
    """B2: `relay audit export` writes a signed bundle while the relay runs, and `audit
    verify` checks it (and the on-disk chain) in a clean environment with no relay config;
    a tampered line fails with its line number."""
    phone = relay.login()
    wid = default_workspace(phone)
    for role in ("viewer", "member"):
        assert phone.post(f"/api/v1/workspaces/{wid}/invites", json={"role": role}).is_success
    config = str(relay.setup.config_path)
    out = tmp_path / "export.jsonl"
    res = _cli("codexrelay", "relay", "audit", "export", "--config", config, "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    public = _cli("codexrelay", "relay", "audit", "public-key", "--config", config)
    key = public.stdout.strip()
    assert key == phone.get("/api/v1/audit/public-key").json()["publicKey"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    verify = ("codexrelay", "audit", "verify")
    res = _cli(*verify, str(out), "--public-key", key, cwd=elsewhere, env=clean)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "OK: bundle export.jsonl" in res.stdout
    res = _cli("codexrelay.auditverify", str(out), "--public-key", key, cwd=elsewhere, env=clean)
    assert res.returncode == 0, res.stdout + res.stderr
    audit_dir = str(relay.setup.data_dir / "audit")
    res = _cli(*verify, "--dir", audit_dir, "--public-key", key, cwd=elsewhere, env=clean)
    assert res.returncode == 0, res.stdout + res.stderr

    ws_out = tmp_path / "ws.jsonl"
    export = ("codexrelay", "relay", "audit", "export", "--config", config)
    res = _cli(*export, "--out", str(ws_out), "--workspace", wid, "--since", "2000-01-01")
    assert res.returncode == 0, res.stderr
    assert _cli(*verify, str(ws_out), "--public-key", key, env=clean).returncode == 0

    lines = out.read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace('"viewer"', '"owner"')
    out.write_text("".join(lines))
    res = _cli(*verify, str(out), "--public-key", key, cwd=elsewhere, env=clean)
    assert res.returncode == 1
    assert "line 3" in res.stdout
    assert _cli(*verify, str(out), "--public-key", "nonsense", env=clean).returncode == 2
    phone.close()


def test_no_prompt_or_output_canary_in_the_audit_trail(world: World):
    """R10, B2: a real agent runs a task whose prompt and output carry a canary; the trail
    records the task's metadata and never the canary."""
    canary = f"canary-{uuid.uuid4().hex}"
    done = run(
        world,
        type="codex_exec",
        prompt=f"{canary} prompt\nFAKE: command echo {canary}\nFAKE: message {canary} done",
    )
    assert canary in done["finalMessage"]
    audit_dir = world.relay.setup.data_dir / "audit"

    def finished() -> list[dict]:
        return [
            r
            for r in _records(audit_dir)
            if r["event"] == "task.finished" and r["target"]["taskId"] == done["id"]
        ]

    record = wait_until(finished, timeout=10, what="the task.finished record")[0]
    assert record["actor"]["type"] == "agent"
    assert record["target"]["status"] == "completed"
    created = [r for r in _records(audit_dir) if r["event"] == "task.created"]
    assert [r["target"]["taskId"] for r in created] == [done["id"]]
    for path in audit_dir.iterdir():
        assert canary.encode() not in path.read_bytes(), path
    assert verify_dir(audit_dir, [_key(world.relay)]).ok
