"""The offline verifier on export bundles: whole and per-workspace chains verify on their
own; any edited, deleted, reordered or inserted line, a changed manifest, a truncated file
or the wrong key is reported at the line it broke (B2)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from codexrelay.auditverify import (
    canonical,
    load_public_key,
    parse_public_key,
    raw_public_key,
    record_hash,
    run,
    verify_bundle,
)
from codexrelay.relay.audit.keys import Signer, ensure_signer
from codexrelay.relay.audit.log import AuditLog
from codexrelay.relay.audit.reading import ExportScope, bundle

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
ACTOR = {"type": "user", "userId": "usr_1", "session": "cd" * 16, "via": "passkey"}
WORKSPACES = ("ws_a", "ws_b", "instance")


@pytest.fixture
def trail(tmp_path: Path) -> tuple[Path, Signer]:
    """Thirty records over two workspaces and the instance, on disk."""
    signer, _ = ensure_signer(tmp_path)
    log = AuditLog.open(tmp_path / "audit", signer)
    for i in range(30):
        log.append(
            "member.added",
            workspace=WORKSPACES[i % 3],
            actor=ACTOR,
            target={"userId": f"usr_{i}", "role": "viewer"},
            client="198.51.100.4",
            now=T0 + timedelta(minutes=i),
        )
        log.flush_sync()
    return tmp_path / "audit", signer


def export(trail: tuple[Path, Signer], out: Path, scope: ExportScope | None = None) -> Path:
    directory, signer = trail
    lines = bundle(directory, signer, scope or ExportScope(), upto=None, now=T0)
    out.write_bytes(b"".join(lines))
    return out


def test_whole_chain_bundle_verifies(trail, tmp_path):
    """B2: an unfiltered export is the global chain; it verifies with the public key."""
    report = verify_bundle(export(trail, tmp_path / "all.jsonl"), [trail[1].public_key])
    assert report.ok, report.lines()
    assert (report.records, report.first_seq, report.last_seq) == (30, 1, 30)
    assert report.manifest["chain"] == "global"


def test_workspace_bundle_is_a_complete_chain_of_its_own(trail, tmp_path):
    """B2: a one-workspace export skips other workspaces' seqs yet verifies link by link."""
    path = export(trail, tmp_path / "b.jsonl", ExportScope(workspace="ws_b"))
    report = verify_bundle(path, [trail[1].public_key])
    assert report.ok, report.lines()
    records = [json.loads(line) for line in path.read_bytes().splitlines()[:-1]]
    assert [r["seq"] for r in records] == list(range(2, 31, 3))
    assert [r["wseq"] for r in records] == list(range(1, 11))


def test_since_and_until_give_a_contiguous_piece(trail, tmp_path):
    """A time window exports a contiguous piece; its first link is in the signed manifest."""
    scope = ExportScope(
        workspace="ws_a", since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=20)
    )
    path = export(trail, tmp_path / "w.jsonl", scope)
    report = verify_bundle(path, [trail[1].public_key])
    assert report.ok, report.lines()
    assert (report.first_seq, report.last_seq, report.records) == (13, 19, 3)
    assert report.manifest["filters"]["since"] == "2026-11-29T12:10:00.000Z"
    everything = verify_bundle(
        export(trail, tmp_path / "g.jsonl", ExportScope(since=T0 + timedelta(minutes=5))),
        [trail[1].public_key],
    )
    assert everything.ok
    assert everything.first_seq == 6


def _rewrite(path: Path, change) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    change(lines)
    path.write_bytes(b"".join(lines))


def _edit_field(lines: list[bytes]) -> None:
    record = json.loads(lines[4])
    record["target"]["role"] = "owner"
    lines[4] = canonical(record) + b"\n"


def _edit_and_rehash(lines: list[bytes]) -> None:
    record = json.loads(lines[4])
    record["actor"]["userId"] = "usr_attacker"
    record["hash"] = record_hash(record)
    lines[4] = canonical(record) + b"\n"


def _respace(lines: list[bytes]) -> None:
    lines[4] = json.dumps(json.loads(lines[4]), sort_keys=True).encode() + b"\n"


def _forge(lines: list[bytes]) -> None:
    """Insert a record signed with some other key, linked to fit."""
    other = Signer(Ed25519PrivateKey.generate())
    before, after = json.loads(lines[3]), json.loads(lines[4])
    forged = dict(before, seq=after["seq"], prev=before["hash"], event="passkey.revoked")
    forged.pop("hash")
    forged.pop("sig")
    forged["hash"] = record_hash(forged)
    forged["sig"] = other.sign_record(forged["hash"])
    lines.insert(4, canonical(forged) + b"\n")


def _swap(lines: list[bytes]) -> None:
    lines[4], lines[5] = lines[5], lines[4]


def _duplicate(lines: list[bytes]) -> None:
    lines.insert(5, lines[3])


def _delete_first(lines: list[bytes]) -> None:
    del lines[0]


def _delete_middle(lines: list[bytes]) -> None:
    del lines[4]


def _delete_last_record(lines: list[bytes]) -> None:
    del lines[-2]


def _edit_manifest(lines: list[bytes]) -> None:
    outer = json.loads(lines[-1])
    outer["manifest"]["count"] -= 1
    lines[-1] = canonical(outer) + b"\n"


def _drop_manifest(lines: list[bytes]) -> None:
    del lines[-1]


def _truncate(lines: list[bytes]) -> None:
    lines[-1] = lines[-1][:40]


# (how, line the verifier must name, seq it must name, words in the reason)
TAMPERING = [
    (_edit_field, 5, 5, "hash"),
    (_edit_and_rehash, 5, 5, "signature"),
    (_respace, 5, 5, "canonical"),
    (_forge, 5, 5, "signature"),
    (_swap, 5, 6, "missing"),
    (_duplicate, 6, 4, "out of order"),
    (_delete_first, 1, 2, "start"),
    (_delete_middle, 5, 6, "missing"),
    (_delete_last_record, 30, 29, "count"),
    (_edit_manifest, 31, None, "manifest signature"),
    (_drop_manifest, 30, None, "manifest"),
    (_truncate, 31, None, "truncated"),
]


@pytest.mark.parametrize(
    ("change", "line", "seq", "words"), TAMPERING, ids=[t[0].__name__ for t in TAMPERING]
)
def test_tampering_with_a_bundle_is_found_at_that_line(trail, tmp_path, change, line, seq, words):
    """B2: every kind of one-line change to an export is reported at the line it broke."""
    path = export(trail, tmp_path / "all.jsonl")
    _rewrite(path, change)
    report = verify_bundle(path, [trail[1].public_key])
    assert not report.ok
    assert (report.problem.line, report.problem.seq) == (line, seq), report.lines()
    assert words in report.problem.reason, report.problem.reason


def test_deleting_a_line_of_a_workspace_bundle_is_found(trail, tmp_path):
    """B2: in a one-workspace bundle (whose global seqs have gaps anyway) a deleted line is
    still found at the record after it, through the workspace chain."""
    path = export(trail, tmp_path / "a.jsonl", ExportScope(workspace="ws_a"))
    _rewrite(path, _delete_middle)
    report = verify_bundle(path, [trail[1].public_key])
    assert not report.ok
    assert report.problem.line == 5
    assert "wseq" in report.problem.reason


def test_a_record_of_another_workspace_is_refused(trail, tmp_path):
    """R03: a workspace bundle cannot carry another workspace's record, even a genuine one."""
    path = export(trail, tmp_path / "a.jsonl", ExportScope(workspace="ws_a"))
    other = tmp_path / "all.jsonl"
    export(trail, other)
    foreign = other.read_bytes().splitlines(keepends=True)[1]
    _rewrite(path, lambda lines: lines.insert(2, foreign))
    report = verify_bundle(path, [trail[1].public_key])
    assert report.problem.line == 3
    assert "belongs to ws_b" in report.problem.reason


def test_the_wrong_key_verifies_nothing(trail, tmp_path):
    """B2: a bundle signed by one relay does not verify with another relay's key."""
    path = export(trail, tmp_path / "all.jsonl")
    other = Ed25519PrivateKey.generate().public_key()
    report = verify_bundle(path, [other])
    assert not report.ok
    assert "manifest signature" in report.problem.reason


def test_public_key_forms(trail, tmp_path):
    """The verifier takes the key as base64, base64url, hex, PEM, with a prefix, or a file."""
    key = trail[1].public_key
    raw = raw_public_key(key)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    (tmp_path / "key.pub").write_text(pem)
    forms = [
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        raw.hex(),
        pem,
        "ed25519:" + base64.b64encode(raw).decode(),
    ]
    for form in forms:
        assert raw_public_key(parse_public_key(form)) == raw
    assert raw_public_key(load_public_key(str(tmp_path / "key.pub"))) == raw
    for bad in (
        "",
        "abcd",
        "00" * 31,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ):
        with pytest.raises(ValueError):  # noqa: PT011 - each bad form has its own message
            parse_public_key(bad)


def test_run_exit_codes_and_json_report(trail, tmp_path, capsys):
    """Exit 0 verified, 1 broken, 2 bad usage; ``--json`` names the first broken record."""
    path = export(trail, tmp_path / "all.jsonl")
    key = trail[1].public_text
    assert run(path, directory=None, key_specs=[key]) == 0
    assert "OK: bundle all.jsonl: 30 records verified" in capsys.readouterr().out
    _rewrite(path, _delete_middle)
    assert run(path, directory=None, key_specs=[key], as_json=True) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["problem"]["line"] == 5
    assert run(path, directory=None, key_specs=["not a key"]) == 2
    assert run(None, directory=None, key_specs=[key]) == 2
    assert run(path, directory=trail[0], key_specs=[key]) == 2


def _cut_last_record(directory: Path) -> dict:
    """Delete the chain's last record from its newest file; returns the record."""
    newest = sorted(directory.glob("*.jsonl"))[-1]
    lines = newest.read_bytes().splitlines(keepends=True)
    newest.write_bytes(b"".join(lines[:-1]))
    return json.loads(lines[-1])


def test_records_cut_from_the_end_are_found_with_an_expected_head(trail, capsys):
    """A chain cut short still links up, so only a head noted earlier can tell: with
    ``--expect-head`` the deletion of the last record fails verification."""
    directory, signer = trail
    key = signer.public_text
    head = None
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_bytes().splitlines():
            head = json.loads(line)
    noted = f"{head['seq']}:{head['hash']}"
    assert run(None, directory=directory, key_specs=[key], expect_head=noted) == 0
    capsys.readouterr()
    cut = _cut_last_record(directory)
    assert cut["seq"] == 30
    assert run(None, directory=directory, key_specs=[key]) == 0  # the chain alone looks fine
    assert run(None, directory=directory, key_specs=[key], expect_head=noted) == 1
    assert "truncated: the chain ends at seq 29" in capsys.readouterr().out


def test_an_expected_head_that_was_rewritten_is_found(trail, tmp_path, capsys):
    """The head's hash must match what was noted, in a bundle as in a directory."""
    path = export(trail, tmp_path / "all.jsonl")
    key = trail[1].public_text
    assert run(path, directory=None, key_specs=[key], expect_head="12:" + "0" * 64) == 1
    assert "head mismatch" in capsys.readouterr().out
    assert run(path, directory=None, key_specs=[key], expect_head="31:" + "0" * 64) == 1
    assert run(path, directory=None, key_specs=[key], expect_head="nonsense") == 2
