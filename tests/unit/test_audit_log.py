"""The on-disk audit chain: linking and signing, batched durable writes, rotation, restart,
torn tails, write failures, and tampering found at the record it touched (B2)."""

from __future__ import annotations

import asyncio
import itertools
import json
import resource
import signal
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codexrelay.auditverify import (
    GENESIS,
    canonical,
    chain_files,
    iter_dir,
    record_hash,
    verify_dir,
)
from codexrelay.errors import AppError
from codexrelay.relay.audit.keys import ensure_signer, load_signer
from codexrelay.relay.audit.log import CHECKPOINT_NAME, AuditLog, scan
from codexrelay.relay.storage.jsonfile import StateError

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
USER = {"type": "user", "userId": "usr_1", "session": "ab" * 16, "via": "passkey"}


def open_log(data: Path, max_file_bytes: int = 8 * 1024 * 1024) -> AuditLog:
    signer, _ = ensure_signer(data)
    return AuditLog.open(data / "audit", signer, max_file_bytes=max_file_bytes)


def add(log: AuditLog, n: int, *, workspaces: tuple[str, ...] = ("ws_a",), start: int = 0) -> None:
    for i in range(start, start + n):
        log.append(
            "invite.created",
            workspace=workspaces[i % len(workspaces)],
            actor=USER,
            target={"inviteId": f"inv_{i}", "role": "viewer"},
            client="203.0.113.7",
            now=T0 + timedelta(seconds=i),
        )
        if not _loop_running():
            log.flush_sync()


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def keys(data: Path) -> list:
    return [load_signer(data).public_key]


def records(data: Path) -> list[dict]:
    return [json.loads(line) for _, _, line, _ in iter_dir(data / "audit") if line is not None]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_chain_links_signs_and_rotates_across_files(tmp_path):
    """B2: records link globally and per workspace, are signed, and the chain runs across
    size-rotated files; the directory is 0700 and every file 0600."""
    log = open_log(tmp_path, max_file_bytes=3000)
    add(log, 40, workspaces=("ws_a", "ws_b", "instance"))
    log.flush_sync()
    files = chain_files(tmp_path / "audit")
    assert len(files) > 3
    assert stat.S_IMODE((tmp_path / "audit").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)
    found = records(tmp_path)
    assert [r["seq"] for r in found] == list(range(1, 41))
    assert found[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(found))
    by_ws = [r for r in found if r["workspace"] == "ws_b"]
    assert [r["wseq"] for r in by_ws] == list(range(1, len(by_ws) + 1))
    assert by_ws[0]["wprev"] == GENESIS
    assert all(b["wprev"] == a["hash"] for a, b in itertools.pairwise(by_ws))
    report = verify_dir(tmp_path / "audit", keys(tmp_path))
    assert report.ok, report.lines()
    assert report.records == 40


def test_restart_continues_the_chain_from_the_checkpoint(tmp_path):
    """A restart finds the heads (from the checkpoint, or by reading every file when the
    checkpoint is missing or wrong) and continues the chain in a new file."""
    log = open_log(tmp_path, max_file_bytes=2000)
    add(log, 25, workspaces=("ws_a", "ws_b"))
    asyncio.run(log.close())
    assert (tmp_path / "audit" / CHECKPOINT_NAME).exists()
    from_checkpoint, _ = scan(tmp_path / "audit")
    (tmp_path / "audit" / CHECKPOINT_NAME).write_text('{"after": "nope", "head": {}}')
    from_files, _ = scan(tmp_path / "audit")
    assert from_checkpoint == from_files
    assert (from_files.seq, from_files.workspaces["ws_b"][0]) == (25, 12)
    log = open_log(tmp_path, max_file_bytes=2000)
    add(log, 5, start=25)
    asyncio.run(log.close())
    assert [r["seq"] for r in records(tmp_path)] == list(range(1, 31))
    assert verify_dir(tmp_path / "audit", keys(tmp_path)).ok


async def test_durable_waits_for_the_write_and_batches_fsyncs(tmp_path):
    """B2: ``durable`` returns only once the record is in the file; many concurrent records
    share a few fsyncs (the store.py rule, coalesced)."""
    log = open_log(tmp_path)
    add(log, 1)
    await log.durable()
    assert len(records(tmp_path)) == 1

    async def one(i: int) -> None:
        seq = log.append(
            "task.created", workspace="ws_a", actor=USER, target={"i": i}, client=None, now=T0
        )
        await log.durable(seq)
        assert any(r["seq"] == seq for r in records(tmp_path))

    before = log.writes
    await asyncio.gather(*(one(i) for i in range(200)))
    assert log.writes - before < 100
    await log.close()
    assert verify_dir(tmp_path / "audit", keys(tmp_path)).ok


def test_torn_tail_is_reported_then_recorded_and_the_chain_goes_on(tmp_path):
    """A crash mid-write leaves a torn last line: the verifier reports it and verifies the
    rest; the next start says so in a record and continues from the last whole record."""
    log = open_log(tmp_path)
    add(log, 5)
    asyncio.run(log.close())
    last = chain_files(tmp_path / "audit")[-1]
    with last.open("ab") as fh:
        fh.write(b'{"actor":{"type":"relay"},"client":null,"ev')
    report = verify_dir(tmp_path / "audit", keys(tmp_path))
    assert report.ok, report.lines()
    assert report.records == 5
    assert "torn final line" in report.warnings[0]
    log = open_log(tmp_path)
    assert log.recovery.target() is not None
    assert log.recovery.target()["tornBytes"] == 43
    log.append(
        "audit.recovered",
        workspace="instance",
        actor={"type": "relay"},
        target=log.recovery.target(),
        client=None,
        now=T0,
    )
    add(log, 2, start=5)
    asyncio.run(log.close())
    report = verify_dir(tmp_path / "audit", keys(tmp_path))
    assert report.ok, report.lines()
    assert report.records == 8
    assert len(report.warnings) == 1


def test_failed_write_answers_503_and_keeps_the_record_for_the_retry(tmp_path):
    """A write that fails (here: the file size limit) fails its waiters with 503 and loses
    no link: the record is written with the next one and the chain still verifies."""
    log = open_log(tmp_path)
    add(log, 1)
    log.flush_sync()
    size = chain_files(tmp_path / "audit")[-1].stat().st_size
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    async def run() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 10, hard))
        try:
            add(log, 1, start=1)
            with pytest.raises(AppError) as failed:
                await log.durable()
            assert failed.value.status == 503
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        add(log, 1, start=2)
        await log.durable()
        await log.close()

    try:
        asyncio.run(run())
    finally:
        signal.signal(signal.SIGXFSZ, previous)
    assert [r["seq"] for r in records(tmp_path)] == [1, 2, 3]
    assert verify_dir(tmp_path / "audit", keys(tmp_path)).ok


@pytest.mark.parametrize(
    "value", ["crb_abc", "crs_x.y", "cra_token", "-----BEGIN PRIVATE KEY-----", "x" * 300]
)
def test_credentials_and_text_never_enter_a_record(tmp_path, value):
    """B2: a token, cookie, key or long text offered as a value is refused outright."""
    log = open_log(tmp_path)
    with pytest.raises(ValueError, match="looks like"):
        log.append("x", workspace="ws_a", actor=USER, target={"v": value}, client=None, now=T0)


def test_only_scalars_enter_a_record(tmp_path):
    """Values are ids, hashes, flags and counts: nested data is refused."""
    log = open_log(tmp_path)
    with pytest.raises(TypeError):
        log.append("x", workspace="ws_a", actor=USER, target={"v": {"a": 1}}, client=None, now=T0)


def _tamper(path: Path, how: str) -> tuple[int, int]:
    """Change line 3 of ``path`` as ``how`` says; returns (line, seq) the verifier must name."""
    lines = lines_of(path)
    record = json.loads(lines[2])
    if how == "edit":
        record["target"]["role"] = "owner"
        lines[2] = json.dumps(record, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        expected = (3, 3)
    elif how == "edit-and-rehash":
        record["target"]["role"] = "owner"
        record["hash"] = record_hash(record)
        lines[2] = canonical(record) + b"\n"
        expected = (3, 3)
    elif how == "delete":
        del lines[2]
        expected = (3, 4)
    elif how == "reorder":
        lines[2], lines[3] = lines[3], lines[2]
        expected = (3, 4)
    elif how == "insert":
        lines.insert(3, lines[1])
        expected = (4, 2)
    else:
        raise AssertionError(how)
    path.write_bytes(b"".join(lines))
    return expected


@pytest.mark.parametrize("how", ["edit", "edit-and-rehash", "delete", "reorder", "insert"])
def test_tampering_on_disk_is_found_at_that_record(tmp_path, how):
    """B2: editing (even with a recomputed hash), deleting, reordering or inserting one line
    in the on-disk chain is reported at that line and record."""
    log = open_log(tmp_path)
    add(log, 8, workspaces=("ws_a", "ws_b"))
    asyncio.run(log.close())
    path = chain_files(tmp_path / "audit")[0]
    line, seq = _tamper(path, how)
    report = verify_dir(tmp_path / "audit", keys(tmp_path))
    assert not report.ok
    assert (report.problem.line, report.problem.seq) == (line, seq), report.lines()
    assert report.records == line - 1


def test_a_missing_file_is_a_gap(tmp_path):
    """Removing a whole file from the middle of the chain is found at the next file."""
    log = open_log(tmp_path, max_file_bytes=1500)
    add(log, 20)
    asyncio.run(log.close())
    files = chain_files(tmp_path / "audit")
    files[1].unlink()
    report = verify_dir(tmp_path / "audit", keys(tmp_path))
    assert not report.ok
    assert report.problem.file == files[2].name
    assert "missing" in report.problem.reason
    files[0].unlink()
    assert not verify_dir(tmp_path / "audit", keys(tmp_path)).ok
    partial = verify_dir(tmp_path / "audit", keys(tmp_path), allow_partial_start=True)
    assert partial.ok, partial.lines()
    assert "starts at seq" in partial.warnings[-1]


def test_signing_key_is_private_and_checked(tmp_path):
    """B2: the key is made once (0600), kept across calls, and refused if others can read it."""
    first, created = ensure_signer(tmp_path)
    again, created_again = ensure_signer(tmp_path)
    assert (created, created_again) == (True, False)
    assert first.key_id == again.key_id
    key = tmp_path / "audit-signing-key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE" not in (tmp_path / "audit-signing-key.pub").read_text()
    assert first.key_id in repr(first)
    assert "PRIVATE" not in repr(first)
    key.chmod(0o644)
    with pytest.raises(StateError, match="readable by others"):
        load_signer(tmp_path)
