"""Offline verification of the relay's audit trail (B2, O4): exports and on-disk chains.

This module is the audit format's reference. It needs only the standard library and
``cryptography``, reads no config, and runs as ``codexrelay audit verify`` or
``python -m codexrelay.auditverify``, so a bundle can be checked on any machine.

A record is one line of canonical JSON (sorted keys, no spaces, UTF-8)::

    {"actor":{...},"client":"203.0.113.7","event":"invite.created","hash":"<hex>",
     "prev":"<hex>","seq":42,"sig":"<base64url>","target":{"inviteId":"inv_..."},
     "time":"2026-11-29T12:00:00.000Z","v":1,"workspace":"ws_...","wprev":"<hex>","wseq":7}

- ``hash`` is SHA-256 over the canonical JSON of the record without ``hash`` and ``sig``.
- ``prev`` is the hash of record ``seq - 1`` (64 zeros for seq 1): the global chain.
- ``wprev``/``wseq`` chain the records of one workspace (``"instance"`` for relay-wide
  events) the same way, so a one-workspace export is a complete chain of its own.
- ``sig`` is Ed25519 over ``RECORD_CONTEXT + bytes.fromhex(hash)`` by the relay's key.

An export bundle is the records of one chain (global or one workspace), oldest first, as
the relay stored them, then one manifest line ``{"manifest": {...}, "signature": "..."}``
whose Ed25519 signature (over ``MANIFEST_CONTEXT + canonical(manifest)``) covers the
filters, count, first/last records, the link before the first record and a SHA-256 of
every record line. Editing, deleting, inserting or reordering any line breaks a record's
hash or signature, a link, the sequence, or the manifest.

A chain alone cannot show records cut from its end: the shorter chain is still a valid
chain. ``--expect-head SEQ:HASH`` closes that: a head noted earlier off the host (the phone
shows each chain's head) must still be in the chain, with the same hash. The same check
applies to an agent's own audit log (``--agent-log``, format in ``codexrelay.e2e.audit``).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

RECORD_VERSION = 1
GENESIS = "0" * 64
INSTANCE = "instance"
EXPORT_FORMAT = "codexrelay-audit-export/1"
RECORD_CONTEXT = b"codexrelay/audit/record/v1\x00"
MANIFEST_CONTEXT = b"codexrelay/audit/manifest/v1\x00"
UNHASHED = frozenset({"hash", "sig"})
RECORD_FIELDS = frozenset(
    {"v", "seq", "time", "workspace", "wseq", "event", "actor", "target", "client"}
    | {"prev", "wprev", "hash", "sig"}
)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

EXIT_OK, EXIT_BROKEN, EXIT_USAGE = 0, 1, 2


# --- the encoding, shared with the relay's writer ---


def canonical(value: Any) -> bytes:
    """The one byte encoding that is hashed and signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the record without its ``hash`` and ``sig``."""
    body = {k: v for k, v in record.items() if k not in UNHASHED}
    return hashlib.sha256(canonical(body)).hexdigest()


def record_message(hash_hex: str) -> bytes:
    """What a record's signature covers (domain-separated from manifests)."""
    return RECORD_CONTEXT + bytes.fromhex(hash_hex)


def manifest_message(manifest: Mapping[str, Any]) -> bytes:
    """What a bundle manifest's signature covers."""
    return MANIFEST_CONTEXT + canonical(manifest)


def b64(data: bytes) -> str:
    """Unpadded base64url, as signatures are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    """Standard or URL-safe base64, padded or not; ``ValueError`` if malformed."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        msg = "not base64"
        raise ValueError(msg) from exc


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The key's 32 raw bytes."""
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 16 hex digits of SHA-256 of its bytes."""
    return hashlib.sha256(raw_public_key(key)).hexdigest()[:16]


def public_key_text(key: Ed25519PublicKey) -> str:
    """The form the relay prints and serves: standard base64 of the 32 raw bytes."""
    return base64.b64encode(raw_public_key(key)).decode("ascii")


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key given as PEM, 64 hex digits, or base64 of the 32 raw bytes."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        loaded = serialization.load_pem_public_key(text.encode("ascii"))
        if not isinstance(loaded, Ed25519PublicKey):
            msg = "the PEM key is not an Ed25519 public key"
            raise ValueError(msg)
        return loaded
    text = text.removeprefix("ed25519:")
    raw = bytes.fromhex(text) if re.fullmatch(r"[0-9a-fA-F]{64}", text) else unb64(text)
    if len(raw) != 32:
        msg = "an Ed25519 public key is 32 bytes"
        raise ValueError(msg)
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(spec: str) -> Ed25519PublicKey:
    """``spec`` is the key itself or the path of a file holding it."""
    path = Path(spec)
    try:
        is_file = len(spec) < 4096 and path.is_file()
    except OSError:
        is_file = False
    return parse_public_key(path.read_text() if is_file else spec)


# --- checking ---


@dataclass(frozen=True)
class ExpectedHead:
    """A head noted earlier: record ``seq`` had ``hash``."""

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> ExpectedHead:
        """``SEQ:HASH`` (the relay's hash is 64 hex digits, an agent's 43 base64url)."""
        seq, colon, digest = text.strip().partition(":")
        if not colon or not seq.isdigit() or int(seq) < 1 or not digest:
            msg = "--expect-head is SEQ:HASH, e.g. 42:3f9a... (as the phone shows it)"
            raise ValueError(msg)
        return cls(int(seq), digest)


class HeadCheck:
    """Watches the records go by for the one at the expected head."""

    def __init__(self, expected: ExpectedHead | None) -> None:
        self.expected = expected
        self.seen: str | None = None

    def see(self, record: Mapping[str, Any]) -> None:
        if self.expected is not None and record["seq"] == self.expected.seq:
            self.seen = str(record["hash"])

    def problem(self, report: Report) -> Problem | None:
        """Truncation or a rewritten head, once the whole chain verified."""
        expected = self.expected
        if expected is None or not report.ok:
            return None
        where = report.kind
        if self.seen is None:
            last = report.last_seq if report.last_seq is not None else 0
            reason = (
                f"truncated: the chain ends at seq {last}, but head {expected.seq} was noted "
                "(records were cut from its end)"
            )
            return Problem(where, 0, report.last_seq, reason)
        if self.seen != expected.hash:
            reason = f"head mismatch: record {expected.seq} is not the one noted (rewritten)"
            return Problem(where, 0, expected.seq, reason)
        return None


@dataclass(frozen=True)
class Problem:
    """The first broken record (or manifest) and why."""

    file: str
    line: int
    seq: int | None
    reason: str

    def describe(self) -> str:
        """One line for a person."""
        at = f"line {self.line}" + (f" (seq {self.seq})" if self.seq is not None else "")
        return f"{self.file}: {at}: {self.reason}"


@dataclass
class Report:
    """What a verification found."""

    kind: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_time: str | None = None
    last_time: str | None = None
    first_hash: str | None = None
    last_hash: str | None = None
    problem: Problem | None = None
    warnings: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        """True when nothing is broken (warnings allowed)."""
        return self.problem is None

    def to_json(self) -> dict[str, Any]:
        """The report for scripts (``--json``)."""
        return {
            "ok": self.ok,
            "kind": self.kind,
            "records": self.records,
            "firstSeq": self.first_seq,
            "lastSeq": self.last_seq,
            "firstTime": self.first_time,
            "lastTime": self.last_time,
            "problem": None
            if self.problem is None
            else {
                "file": self.problem.file,
                "line": self.problem.line,
                "seq": self.problem.seq,
                "reason": self.problem.reason,
            },
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        """The report for a person."""
        span = (
            f"seq {self.first_seq}..{self.last_seq}, {self.first_time} .. {self.last_time}"
            if self.records
            else "no records"
        )
        out = [f"warning: {w}" for w in self.warnings]
        if self.problem is None:
            out.append(f"OK: {self.kind}: {self.records} records verified ({span})")
        else:
            out.append(f"FAILED: {self.problem.describe()}")
            out.append(f"  {self.records} records before it verified ({span})")
        return out


class Broken(Exception):  # noqa: N818 - a verification outcome, not a program error
    """A record or manifest failed a check."""


def _check_fields(record: Any) -> None:
    if not isinstance(record, dict) or set(record) != RECORD_FIELDS:
        raise Broken("not an audit record (wrong fields)")
    if record["v"] != RECORD_VERSION:
        raise Broken(f"unknown record version {record['v']!r}")
    for name in ("seq", "wseq"):
        value = record[name]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise Broken(f"{name} is not a positive integer")
    for name in ("prev", "wprev", "hash"):
        if not isinstance(record[name], str) or not _HEX64.match(record[name]):
            raise Broken(f"{name} is not a SHA-256 hex digest")
    texts = ("time", "workspace", "event", "sig")
    if not all(isinstance(record[n], str) for n in texts):
        raise Broken("a text field is not text")
    if not isinstance(record["actor"], dict) or not isinstance(record["target"], dict):
        raise Broken("actor and target must be objects")


def check_record(line: bytes, keys: Sequence[Ed25519PublicKey]) -> dict[str, Any]:
    """Parse one line and check it stands on its own: canonical form, hash, signature."""
    try:
        record = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Broken("not valid JSON") from None
    _check_fields(record)
    if canonical(record) != line:
        raise Broken("not in canonical form (the line was edited)")
    if record_hash(record) != record["hash"]:
        raise Broken("content does not match its hash (the record was edited)")
    if not _signed(record_message(record["hash"]), record["sig"], keys):
        raise Broken("signature does not verify with the given public key")
    return dict(record)


def _signed(message: bytes, signature: str, keys: Sequence[Ed25519PublicKey]) -> bool:
    try:
        raw = unb64(signature)
    except ValueError:
        return False
    for key in keys:
        try:
            key.verify(raw, message)
        except InvalidSignature:
            continue
        return True
    return False


class Chain:
    """Checks links between consecutive records: the global chain, and each workspace's.

    ``start`` is the link expected before the first record (None: accept whatever the
    first record says, for a directory whose oldest files were archived).
    """

    def __init__(self, *, workspace: str | None, start: str | None) -> None:
        self.workspace = workspace
        self.start = start
        self.last: dict[str, Any] | None = None
        self.heads: dict[str, tuple[int, str]] = {}

    def add(self, record: dict[str, Any]) -> None:
        """Raise ``Broken`` if ``record`` does not follow the records before it."""
        if self.workspace is None:
            self._link(record, "seq", "prev", self.last)
            self._workspace_link(record)
        else:
            if record["workspace"] != self.workspace:
                raise Broken(f"belongs to {record['workspace']}, not {self.workspace}")
            self._link(record, "wseq", "wprev", self.last)
        self.last = record

    def _link(
        self, record: dict[str, Any], seq: str, prev: str, last: dict[str, Any] | None
    ) -> None:
        if last is None:
            if self.start is not None and record[prev] != self.start:
                raise Broken(f"{prev} does not match where the chain should start")
            if record[prev] == GENESIS and record[seq] != 1:
                raise Broken(f"starts the chain but {seq} is {record[seq]}")
            return
        if record[seq] <= last[seq]:
            raise Broken(f"{seq} {record[seq]} comes after {last[seq]} (records out of order)")
        if record[seq] != last[seq] + 1:
            raise Broken(f"{seq} {record[seq]} follows {last[seq]}: a record is missing")
        if record[prev] != last["hash"]:
            raise Broken(f"{prev} is not the hash of the record before it")

    def _workspace_link(self, record: dict[str, Any]) -> None:
        head = self.heads.get(record["workspace"])
        if head is None:
            partial = self.start is None or self.start != GENESIS
            if not partial and (record["wseq"] != 1 or record["wprev"] != GENESIS):
                raise Broken("first record of its workspace does not start its chain")
        elif record["wseq"] != head[0] + 1 or record["wprev"] != head[1]:
            raise Broken("does not follow the previous record of its workspace")
        self.heads[record["workspace"]] = (record["wseq"], record["hash"])


def _note(report: Report, record: dict[str, Any]) -> None:
    report.records += 1
    if report.first_seq is None:
        report.first_seq, report.first_time = record["seq"], record["time"]
        report.first_hash = record["hash"]
    report.last_seq, report.last_time = record["seq"], record["time"]
    report.last_hash = record["hash"]


# --- bundles ---


def _manifest(
    last_line: bytes, keys: Sequence[Ed25519PublicKey]
) -> tuple[dict[str, Any] | None, str | None]:
    try:
        outer = json.loads(last_line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, "the last line is not a signed manifest"
    if not isinstance(outer, dict) or set(outer) != {"manifest", "signature"}:
        return None, "the last line is not a signed manifest"
    manifest, signature = outer["manifest"], outer["signature"]
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        return None, f"the manifest is not {EXPORT_FORMAT}"
    if not isinstance(signature, str) or not _signed(manifest_message(manifest), signature, keys):
        return None, "manifest signature does not verify with the given public key"
    return manifest, None


def _compare_manifest(manifest: dict[str, Any], report: Report, digest: str) -> str | None:
    expected = {
        "count": report.records,
        "firstSeq": report.first_seq,
        "lastSeq": report.last_seq,
        "firstHash": report.first_hash,
        "lastHash": report.last_hash,
        "recordsDigest": digest,
    }
    for name, value in expected.items():
        if manifest.get(name) != value:
            return f"manifest says {name} {manifest.get(name)!r}, the records give {value!r}"
    return None


def verify_bundle(
    path: Path, keys: Sequence[Ed25519PublicKey], *, expect: ExpectedHead | None = None
) -> Report:
    """Check an export bundle: manifest signature first, then every record and link."""
    report = Report(kind=f"bundle {path.name}")
    heads = HeadCheck(expect)
    data = path.read_bytes()
    name = path.name
    lines = data.split(b"\n")
    if not data.endswith(b"\n") or len(lines) < 2:
        report.problem = Problem(name, len(lines), None, "the file is truncated")
        return report
    lines.pop()  # the empty string after the final newline
    manifest, why = _manifest(lines[-1], keys)
    if manifest is None:
        report.problem = Problem(name, len(lines), None, why or "bad manifest")
        return report
    report.manifest = manifest
    workspace = (manifest.get("filters") or {}).get("workspace")
    chain = Chain(workspace=workspace, start=manifest.get("startsAfter"))
    digest = hashlib.sha256()
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = check_record(line, keys)
            chain.add(record)
        except Broken as exc:
            report.problem = Problem(name, number, _seq_of(line), str(exc))
            return report
        digest.update(line + b"\n")
        _note(report, record)
        heads.see(record)
    why = _compare_manifest(manifest, report, digest.hexdigest())
    if why is not None:
        report.problem = Problem(name, len(lines), report.last_seq, why)
    report.problem = report.problem or heads.problem(report)
    return report


def _seq_of(line: bytes) -> int | None:
    try:
        value = json.loads(line).get("seq")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


# --- on-disk directories ---


def chain_files(directory: Path) -> list[Path]:
    """The chain's files in order (names start with the zero-padded first seq)."""
    return sorted(p for p in directory.glob("*.jsonl") if p.is_file())


def read_lines(path: Path) -> tuple[list[bytes], bytes]:
    """A file's complete lines and its torn tail (bytes after the last newline)."""
    data = path.read_bytes()
    body, _, tail = data.rpartition(b"\n")
    return (body.split(b"\n") if body or data.startswith(b"\n") else []), tail


def iter_dir(directory: Path) -> Iterator[tuple[Path, int, bytes | None, bytes]]:
    """(file, line number, complete line or None for a torn tail, tail bytes)."""
    for path in chain_files(directory):
        lines, tail = read_lines(path)
        for number, line in enumerate(lines, start=1):
            yield path, number, line, b""
        if tail:
            yield path, len(lines) + 1, None, tail


def verify_dir(
    directory: Path,
    keys: Sequence[Ed25519PublicKey],
    *,
    allow_partial_start: bool = False,
    expect: ExpectedHead | None = None,
) -> Report:
    """Check the relay's on-disk chain across all its files.

    A torn final line of a file (a crash mid-write) is a warning: it never became a record
    and the chain must continue from the record before it.
    """
    report = Report(kind=f"directory {directory}")
    if not directory.is_dir():
        report.problem = Problem(str(directory), 0, None, "no such directory")
        return report
    chain = Chain(workspace=None, start=None if allow_partial_start else GENESIS)
    heads = HeadCheck(expect)
    for path, number, line, tail in iter_dir(directory):
        if line is None:
            report.warnings.append(
                f"{path.name}: torn final line ({len(tail)} bytes) after seq "
                f"{report.last_seq}: the relay stopped mid-write; it is not a record"
            )
            continue
        try:
            record = check_record(line, keys)
            chain.add(record)
        except Broken as exc:
            report.problem = Problem(path.name, number, _seq_of(line), str(exc))
            return report
        _note(report, record)
        heads.see(record)
    if allow_partial_start and report.first_seq not in (None, 1):
        report.warnings.append(f"the chain starts at seq {report.first_seq}, not 1")
    report.problem = heads.problem(report)
    return report


# --- command line ---


def verify(
    target: Path | None,
    *,
    directory: Path | None,
    key_specs: Iterable[str],
    allow_partial_start: bool = False,
    expect_head: str | None = None,
    agent_log: Path | None = None,
) -> Report:
    """Verify a bundle file, a directory or an agent's audit log with the given keys."""
    keys = [load_public_key(spec) for spec in key_specs]
    expect = None if expect_head is None else ExpectedHead.parse(expect_head)
    if agent_log is not None:
        return verify_agent_log(agent_log, keys, expect=expect)
    if directory is not None:
        return verify_dir(directory, keys, allow_partial_start=allow_partial_start, expect=expect)
    if target is None:
        msg = "give a bundle file or --dir"
        raise ValueError(msg)
    return verify_bundle(target, keys, expect=expect)


def verify_agent_log(
    path: Path, keys: Sequence[Ed25519PublicKey], *, expect: ExpectedHead | None = None
) -> Report:
    """An agent's own audit log (TRUST.md §4.6 step 10), signed by the agent's key."""
    from codexrelay.e2e.audit import verify_audit  # noqa: PLC0415 - only for agent logs
    from codexrelay.e2e.log import Head  # noqa: PLC0415

    report = Report(kind=f"agent log {path.name}")
    if len(keys) != 1:
        report.problem = Problem(path.name, 0, None, "give the agent's one public key")
        return report
    head = None if expect is None else Head(expect.seq, expect.hash)
    with path.open("rb") as fh:
        found = verify_audit(fh, keys[0], expect_head=head)
    report.records = found.records
    report.last_seq, report.last_hash = found.head.seq, found.head.hash
    report.first_seq = 1 if found.records else None
    if found.reason is not None:
        reason = found.reason.value
        if found.reason.value == "truncated":
            reason = f"truncated: the log ends at seq {found.head.seq}, but a later head was noted"
        report.problem = Problem(path.name, found.line or 0, found.head.seq, reason)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m codexrelay.auditverify BUNDLE --public-key KEY`` (or ``--dir DIR``)."""
    parser = argparse.ArgumentParser(
        prog="codexrelay-audit-verify", description="Verify a codexrelay audit trail offline."
    )
    parser.add_argument("bundle", nargs="?", type=Path, help="an export bundle file")
    parser.add_argument("--dir", type=Path, help="the relay's audit directory instead")
    parser.add_argument(
        "--public-key",
        action="append",
        required=True,
        help="the relay's audit public key (base64, hex or PEM) or a file holding it",
    )
    parser.add_argument("--allow-partial-start", action="store_true")
    parser.add_argument("--expect-head", help="SEQ:HASH noted earlier: detects records cut off")
    parser.add_argument("--agent-log", type=Path, help="an agent's audit.jsonl instead")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    return run(
        args.bundle,
        directory=args.dir,
        key_specs=args.public_key,
        allow_partial_start=args.allow_partial_start,
        as_json=args.json,
        expect_head=args.expect_head,
        agent_log=args.agent_log,
    )


def run(
    target: Path | None,
    *,
    directory: Path | None,
    key_specs: Iterable[str],
    allow_partial_start: bool = False,
    as_json: bool = False,
    expect_head: str | None = None,
    agent_log: Path | None = None,
) -> int:
    """Verify, print the report, and return the exit status (0 ok, 1 broken, 2 usage)."""
    given = [x for x in (target, directory, agent_log) if x is not None]
    if len(given) != 1:
        print("error: give one of a bundle file, --dir or --agent-log", file=sys.stderr)
        return EXIT_USAGE
    try:
        report = verify(
            target,
            directory=directory,
            key_specs=key_specs,
            allow_partial_start=allow_partial_start,
            expect_head=expect_head,
            agent_log=agent_log,
        )
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    text = json.dumps(report.to_json(), indent=2) if as_json else "\n".join(report.lines())
    print(text)
    return EXIT_OK if report.ok else EXIT_BROKEN


if __name__ == "__main__":
    sys.exit(main())
