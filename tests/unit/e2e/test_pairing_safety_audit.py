"""Pairing secrets and MACs (§4.2), safety numbers (§7), the agent's audit log (B2)."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from codexrelay.e2e import keys, pairing
from codexrelay.e2e.audit import AuditReason, AuditWriter, parse_head, verify_audit
from codexrelay.e2e.log import Head
from codexrelay.e2e.safety import chunks, safety_number, signal_fingerprint
from codexrelay.e2e.statements import StatementError
from codexrelay.e2e.tags import tagged_hash
from codexrelay.e2e.wire import b64u, b64u_decode

SECRET = bytes(range(10))


def test_pairing_secret_is_80_bits_in_crockford_groups() -> None:
    """16 characters, 4 groups, every bit used, round trip with typing slack."""
    text = pairing.format_secret(SECRET)
    assert text == "000G-40R4-0M30-E209"
    assert pairing.parse_secret(text) == SECRET
    assert pairing.parse_secret(text.lower().replace("-", "").replace("0", "o")) == SECRET
    assert pairing.format_secret(b"\xff" * 10) == "ZZZZ-ZZZZ-ZZZZ-ZZZZ"
    with pytest.raises(pairing.PairingError):
        pairing.parse_secret("ZZZZ-ZZZZ-ZZZZ-ZZZU")
    with pytest.raises(pairing.PairingError):
        pairing.format_secret(b"short")


def test_pairing_code_with_secret_parses() -> None:
    """ABCD-EFGH.KQ7M-R2XD-9TPF-WC3H splits into the relay's code and the secret."""
    shown = pairing.format_pair_code("abcd efgh", SECRET)
    assert shown == "ABCD-EFGH.000G-40R4-0M30-E209"
    assert pairing.parse_pair_code(shown) == ("ABCD-EFGH", SECRET)
    with pytest.raises(pairing.PairingError):
        pairing.parse_pair_code("ABCD-EFGH")


def test_pairing_key_is_hkdf_of_the_secret_salted_by_the_code() -> None:
    """K_pair = HKDF-SHA256(s, salt=H(code), info=tag(pair)); another code, another key."""
    expected = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=hashlib.sha256(b"ABCD-EFGH").digest(),
        info=b"codexrelay/v1/pair\x00",
    ).derive(SECRET)
    assert pairing.pairing_key(SECRET, "abcd-efgh") == expected
    assert pairing.pairing_key(SECRET, "ABCD-EFGJ") != expected


def test_pairing_claim_and_grant_macs() -> None:
    """The claim and grant MACs are tagged HMACs; swapped keys or the wrong secret fail."""
    key = pairing.pairing_key(SECRET, "ABCD-EFGH")
    claim = json.dumps(
        {
            "agentId": "ag_1",
            "label": "build-01",
            "hostname": "build-01",
            "workspaceRootName": "src",
            "sigPub": "A" * 43,
            "kexPub": "A" * 43,
            "suite": "c25519",
            "nonce": "A" * 43,
        }
    ).encode()
    mac = pairing.claim_mac(key, claim)
    assert pairing.verify_claim(key, claim, mac)
    assert mac == b64u(
        hmac.new(key, b"codexrelay/v1/pair-claim\x00" + claim, hashlib.sha256).digest()
    )
    assert not pairing.verify_claim(key, claim.replace(b'"sigPub": "A', b'"sigPub": "B'), mac)
    assert not pairing.verify_claim(pairing.pairing_key(b"\x01" * 10, "ABCD-EFGH"), claim, mac)
    assert pairing.parse_claim(claim).label == "build-01"
    grant = (
        b'{"ws":"ws_7","genesisHash":"'
        + b"A" * 43
        + b'","head":{"seq":4,"hash":"'
        + b"A" * 43
        + b'"},"agentId":"ag_1","pairingId":"pr_1"}'
    )
    gmac = pairing.grant_mac(key, grant)
    assert pairing.verify_grant(key, grant, gmac)
    assert not pairing.verify_grant(key, grant, mac)  # a claim MAC is not a grant MAC
    assert pairing.parse_grant(grant).head.seq == 4
    with pytest.raises(StatementError):
        pairing.parse_grant(grant[:-1] + b',"extra":1}')


ALICE = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")


def test_safety_signal_fingerprint_vector() -> None:
    """Our iteration reproduces libsignal's published display fingerprint (testVectorsVersion1)."""
    a = "".join(chunks(signal_fingerprint(b"+14152222222", ALICE), 6))
    b = "".join(chunks(signal_fingerprint(b"+14153333333", BOB), 6))
    assert min(a, b) + max(a, b) == "300354477692869396892869876765458257569162576843440918079131"


VECTORS = json.loads((Path(__file__).parents[2] / "fixtures" / "e2e_vectors.json").read_text())
SAFETY_VECTOR = VECTORS["safety"]
SAFETY_EXPECTED: list[str] = SAFETY_VECTOR["groups"]


def test_safety_number_vector_and_binding() -> None:
    """12 groups of 5 digits; the same vector is checked in the browser."""
    groups = safety_number(
        bytes.fromhex(SAFETY_VECTOR["genesisHash"]),
        SAFETY_VECTOR["id"],
        bytes.fromhex(SAFETY_VECTOR["sigPub"]),
    )
    assert len(groups) == 12
    assert all(len(g) == 5 and g.isdigit() for g in groups)
    assert groups == SAFETY_EXPECTED
    other_ws = safety_number(
        b"\x01" * 32, SAFETY_VECTOR["id"], bytes.fromhex(SAFETY_VECTOR["sigPub"])
    )
    other_id = safety_number(bytes(32), "ag_build02", bytes.fromhex(SAFETY_VECTOR["sigPub"]))
    assert groups not in (other_ws, other_id)


def test_shared_vectors_tags_and_pairing() -> None:
    """The fixture the browser checks too: tagged hashes and pairing MACs."""
    for item in VECTORS["tags"]:
        assert (
            b64u(tagged_hash(item["tag"], b64u_decode(item["data"], max_bytes=4096)))
            == item["hash"]
        )
    vec = VECTORS["pairing"]
    secret = bytes.fromhex(vec["secret"])
    assert pairing.format_secret(secret) == vec["secretText"]
    key = pairing.pairing_key(secret, vec["code"])
    assert b64u(key) == vec["key"]
    assert pairing.claim_mac(key, b64u_decode(vec["claim"], max_bytes=4096)) == vec["claimMac"]
    assert pairing.grant_mac(key, b64u_decode(vec["grant"], max_bytes=4096)) == vec["grantMac"]


def writer_and_lines(n: int = 4) -> tuple[AuditWriter, list[bytes], keys.SigningKey]:
    """An agent audit log of ``n`` records."""
    key = keys.generate_signing_key("c25519")
    writer = AuditWriter(key, agent="ag_3", ws="ws_7")
    lines = [
        writer.append(
            outcome="accepted" if i % 2 == 0 else "refused",
            kind="task",
            now=1000 + i,
            reason=None if i % 2 == 0 else "expired",
            statement=b'{"v":1}',
            auth={"credentialId": "x"},
        )
        for i in range(n)
    ]
    return writer, lines, key


def test_audit_chain_verifies_and_reports_its_head() -> None:
    """A fresh chain verifies; its head is what the phone notes."""
    writer, lines, key = writer_and_lines()
    report = verify_audit(lines, key.public_key())  # type: ignore[arg-type]
    assert report.ok
    assert report.records == 4
    assert report.head == writer.head
    assert parse_head(str(writer.head)) == writer.head


def test_audit_truncation_detected_only_with_expect_head() -> None:
    """Cutting the last record still verifies alone; with --expect-head it is caught."""
    writer, lines, key = writer_and_lines()
    public = key.public_key()
    assert verify_audit(lines[:-1], public).ok  # type: ignore[arg-type]
    report = verify_audit(lines[:-1], public, expect_head=writer.head)  # type: ignore[arg-type]
    assert report.reason is AuditReason.TRUNCATED
    assert verify_audit(lines, public, expect_head=writer.head).ok  # type: ignore[arg-type]
    forged = Head(writer.head.seq, "A" * 43)
    assert verify_audit(lines, public, expect_head=forged).reason is AuditReason.HEAD_MISMATCH  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (
            lambda ls: ls.__setitem__(1, ls[1].replace(b'"refused"', b'"accepted"')),
            AuditReason.BAD_HASH,
        ),
        (lambda ls: ls.__delitem__(1), AuditReason.BAD_SEQ),
        (lambda ls: ls.insert(1, ls.pop(2)), AuditReason.BAD_SEQ),
        (
            lambda ls: ls.__setitem__(0, ls[0].replace(b'{"agent"', b'{ "agent"')),
            AuditReason.NOT_CANONICAL,
        ),
        (lambda ls: ls.__setitem__(0, b"not json\n"), AuditReason.MALFORMED),
    ],
)
def test_audit_edits_detected(mutate: object, reason: AuditReason) -> None:
    """Edited, deleted, reordered, re-spaced or garbage records are detected."""
    _, lines, key = writer_and_lines()
    mutate(lines)  # type: ignore[operator]
    assert verify_audit(lines, key.public_key()).reason is reason  # type: ignore[arg-type]


def test_audit_other_key_refused() -> None:
    """Records signed by another key fail the signature check."""
    _, lines, _ = writer_and_lines()
    other = keys.generate_signing_key("c25519").public_key()
    assert verify_audit(lines, other).reason is AuditReason.BAD_SIGNATURE  # type: ignore[arg-type]
