"""Exact-bytes statements: strict parsing, caps, tags and freshness (TRUST.md §4, §5, §10)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codexrelay.e2e import statements as s
from codexrelay.e2e.statements import StatementError, StatementReason
from codexrelay.e2e.tags import TAG_NAMES, tag, tagged_hash
from codexrelay.e2e.wire import b64u
from tests.unit.e2e import builders as b

MODELS: list[tuple[type[s.Strict], Any]] = [
    (s.TaskStatement, b.task),
    (s.TurnStatement, b.turn),
    (s.DecisionStatement, b.decision),
    (s.CancelStatement, b.cancel),
    (s.InterruptStatement, b.interrupt),
    (s.DeviceCertificate, b.devcert),
]


def refused(text_or_raw: str | bytes, model: type[s.Strict] = s.TaskStatement) -> StatementReason:
    """Parse and return the refusal reason (fails the test if it was accepted)."""
    text = text_or_raw if isinstance(text_or_raw, str) else None
    with pytest.raises(StatementError) as caught:
        _parse(text_or_raw, text, model)
    return caught.value.reason


def _parse(value: str | bytes, text: str | None, model: type[s.Strict]) -> object:
    if text is not None:
        return s.parse_statement(text, model)
    assert isinstance(value, bytes)
    return s.decode_statement(value, model)


def test_tags_are_prefix_free_and_nul_terminated() -> None:
    """Every tag is codexrelay/v1/<name> + NUL, and none is a prefix of another."""
    tags = [tag(name) for name in sorted(TAG_NAMES)]  # type: ignore[arg-type]
    assert all(t.startswith(b"codexrelay/v1/") and t.endswith(b"\x00") for t in tags)
    assert tag("task") == b"codexrelay/v1/task\x00"
    for a in tags:
        assert not any(a != other and other.startswith(a) for other in tags)
    with pytest.raises(ValueError, match="unknown domain tag"):
        tag("nope")  # type: ignore[arg-type]


@pytest.mark.parametrize(("model", "make"), MODELS)
def test_statement_every_kind_parses_and_keeps_its_bytes(model: type[s.Strict], make: Any) -> None:
    """Each kind parses from b64u; the challenge is H(tag(kind) ‖ the received bytes)."""
    data = b.raw(make())
    signed = s.parse_statement(b64u(data), model)
    assert signed.raw == data
    kind = make()["kind"]
    assert (
        signed.challenge == hashlib.sha256(f"codexrelay/v1/{kind}".encode() + b"\0" + data).digest()
    )
    assert signed.challenge == tagged_hash(s.TAG_OF_KIND[kind], data)


def test_statement_other_spellings_of_the_same_json_keep_their_own_hash() -> None:
    """Whitespace or key order changes the bytes and so the challenge: nothing re-serialises."""
    obj = b.task()
    compact = s.decode_statement(b.raw(obj), s.TaskStatement)
    spaced = s.decode_statement(json.dumps(obj, indent=1).encode(), s.TaskStatement)
    assert compact.value == spaced.value
    assert compact.challenge != spaced.challenge


def test_statement_duplicate_keys_refused() -> None:
    """{"writeAccess":false,...,"writeAccess":true} is refused, never last-one-wins."""
    data = b.raw(b.task())[:-1] + b',"writeAccess":true}'
    assert refused(data) is StatementReason.DUPLICATE_KEY
    nested = b.raw(b.task()).replace(b'"seq":3', b'"seq":3,"seq":4')
    assert refused(nested) is StatementReason.DUPLICATE_KEY


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"extra": 1}, StatementReason.UNKNOWN_FIELD),
        ({"write_access": False}, StatementReason.UNKNOWN_FIELD),
        ({"logHead": {"seq": 3, "hash": b.HEAD["hash"], "x": 1}}, StatementReason.UNKNOWN_FIELD),
        ({"v": 2}, StatementReason.UNSUPPORTED_VERSION),
        ({"v": True}, StatementReason.UNSUPPORTED_VERSION),
        ({"v": 1.0}, StatementReason.UNSUPPORTED_VERSION),
        ({"v": "1"}, StatementReason.UNSUPPORTED_VERSION),
        ({"kind": "turn"}, StatementReason.WRONG_KIND),
        ({"writeAccess": 0}, StatementReason.WRONG_TYPE),
        ({"writeAccess": "false"}, StatementReason.WRONG_TYPE),
        ({"issuedAt": 1.8e9}, StatementReason.WRONG_TYPE),
        ({"issuedAt": True}, StatementReason.WRONG_TYPE),
        ({"issuedAt": "1800000000"}, StatementReason.WRONG_TYPE),
        ({"issuedAt": -1}, StatementReason.BAD_VALUE),
        ({"expiresAt": 2**53}, StatementReason.BAD_VALUE),
        ({"ws": ""}, StatementReason.BAD_VALUE),
        ({"ws": "ws 7"}, StatementReason.BAD_VALUE),
        ({"task": "not-a-uuid"}, StatementReason.BAD_VALUE),
        ({"task": "00000000-0000-1000-8000-000000000000"}, StatementReason.BAD_VALUE),
        ({"type": "shell"}, StatementReason.BAD_VALUE),
        ({"bodyHash": "A" * 44}, StatementReason.BAD_VALUE),
        ({"bodyHash": "A" * 42 + "B"}, StatementReason.BAD_VALUE),
        ({"cwd": ""}, StatementReason.BAD_VALUE),
        ({"logHead": [3, "x"]}, StatementReason.WRONG_TYPE),
        ({"expiresAt": b.NOW}, StatementReason.INCONSISTENT),
        ({"actionId": "deploy"}, StatementReason.INCONSISTENT),
        ({"type": "run_action"}, StatementReason.INCONSISTENT),
        (
            {"type": "read_log", "logSourceId": "syslog", "writeAccess": True},
            StatementReason.INCONSISTENT,
        ),
    ],
)
def test_statement_field_refusals(change: dict[str, Any], reason: StatementReason) -> None:
    """Unknown fields, loose types, bad values and inconsistent combinations each get a reason."""
    assert refused(b.raw(b.task(**change))) is reason


def test_statement_missing_field_refused() -> None:
    """Every field is required: dropping any one is refused."""
    for name in b.task():
        obj = b.task()
        del obj[name]
        assert refused(b.raw(obj)) in {
            StatementReason.MISSING_FIELD,
            StatementReason.UNSUPPORTED_VERSION,
            StatementReason.WRONG_KIND,
        }, name


def test_statement_action_and_log_kinds_accepted_with_their_ids() -> None:
    """run_action carries actionId, read_log carries logSourceId."""
    action = s.decode_statement(
        b.raw(b.task(type="run_action", actionId="deploy")), s.TaskStatement
    )
    assert action.value.action_id == "deploy"
    log = s.decode_statement(b.raw(b.task(type="read_log", logSourceId="app")), s.TaskStatement)
    assert log.value.log_source_id == "app"


@pytest.mark.parametrize(
    "text",
    ["", "!!!!", "abc=", "ab+c", "ab/c", "A", "é", "eyJ2IjoxfQ==", " eyJ2IjoxfQ", "eyJ2IjoxfR"],
)
def test_statement_bad_base64url_refused(text: str) -> None:
    """Only canonical unpadded base64url is read; one text per byte string."""
    assert refused(text) in {StatementReason.NOT_BASE64URL, StatementReason.NOT_JSON}


def test_statement_non_canonical_base64url_refused() -> None:
    """Trailing bits that decode to the same bytes are a second spelling, and refused."""
    data = next(
        b.raw(b.task(cwd="r" * n)) for n in range(1, 4) if len(b.raw(b.task(cwd="r" * n))) % 3 == 1
    )
    good = b64u(data)
    last = good[-1]  # encodes 2 bits and 4 zero bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = good[:-1] + alphabet[alphabet.index(last) + 1]
    assert refused(twin) is StatementReason.NOT_BASE64URL


def test_statement_size_cap_checked_before_decoding() -> None:
    """A statement over 8 KiB is refused as too large, as text or as bytes."""
    big = b.raw(b.task(cwd="x" * 4096))[:-1] + b', "pad": "' + b"y" * 5000 + b'"}'
    assert refused(big) is StatementReason.TOO_LARGE
    assert refused(b64u(big)) is StatementReason.TOO_LARGE
    assert refused("A" * 20_000) is StatementReason.TOO_LARGE


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", StatementReason.NOT_UTF8),
        (b"\xef\xbb\xbf" + b.raw(b.task()), StatementReason.NOT_JSON),
        (b"[1]", StatementReason.NOT_AN_OBJECT),
        (b'{"v":1', StatementReason.NOT_JSON),
        (b'{"v":NaN}', StatementReason.NOT_JSON),
        (b'{"v":1,"kind":"task","ws":"\\ud800"}', StatementReason.NOT_JSON),
        (b'{"v":1,"kind":"task","x":{"\\uDFFF":[1]}}', StatementReason.NOT_JSON),
        (b'{"v":1,"kind":"task","ws":"\\u00e9\\uDbFf"}', StatementReason.NOT_JSON),
        (b"[" * 100_00, StatementReason.TOO_LARGE),
        (b"[" * 5000, StatementReason.NOT_JSON),
    ],
)
def test_statement_not_one_unambiguous_object_refused(data: bytes, reason: StatementReason) -> None:
    """Invalid UTF-8, a BOM, non-objects, NaN, lone surrogates and deep nesting are refused."""
    assert refused(data) is reason


def test_statement_wrong_tag_gives_a_different_challenge() -> None:
    """A task's challenge differs from the same bytes under any other tag (cross-protocol)."""
    data = b.raw(b.task())
    signed = s.decode_statement(data, s.TaskStatement)
    others = {tagged_hash(name, data) for name in TAG_NAMES if name != "task"}  # type: ignore[arg-type]
    assert signed.challenge not in others
    assert refused(data, s.DecisionStatement) is StatementReason.WRONG_KIND


@pytest.mark.parametrize(
    ("now", "reason"),
    [
        (b.NOW - 301, StatementReason.NOT_YET_VALID),
        (b.NOW + 601, StatementReason.EXPIRED),
    ],
)
def test_statement_window(now: int, reason: StatementReason) -> None:
    """issuedAt - 300 s <= now <= expiresAt (§4.6 step 4)."""
    s.check_window(b.NOW, b.NOW + 600, now=b.NOW - 300, max_ttl=600)
    s.check_window(b.NOW, b.NOW + 600, now=b.NOW + 600, max_ttl=600)
    with pytest.raises(StatementError) as caught:
        s.check_window(b.NOW, b.NOW + 600, now=now, max_ttl=600)
    assert caught.value.reason is reason


def test_statement_lifetime_over_policy_refused() -> None:
    """expiresAt - issuedAt may not exceed the policy's taskTtlSec."""
    with pytest.raises(StatementError) as caught:
        s.check_window(b.NOW, b.NOW + 601, now=b.NOW, max_ttl=600)
    assert caught.value.reason is StatementReason.TTL_TOO_LONG


def test_statement_recent_for_cancel() -> None:
    """Cancel and interrupt carry only issuedAt: they age out after max_age."""
    s.check_recent(b.NOW, now=b.NOW + 60, max_age=120)
    with pytest.raises(StatementError) as caught:
        s.check_recent(b.NOW, now=b.NOW + 121, max_age=120)
    assert caught.value.reason is StatementReason.EXPIRED


def test_statement_body_must_match_its_hash() -> None:
    """§4.6 step 3: H(body) == bodyHash, then the body parses strictly."""
    body = b'{"prompt":"hi","salt":"AAAAAAAAAAAAAAAAAAAAAA"}'
    stmt = s.decode_statement(b.raw(b.task()), s.TaskStatement).value
    assert s.check_body(stmt, body).prompt == "hi"
    with pytest.raises(StatementError) as caught:
        s.check_body(stmt, body.replace(b"hi", b"rm"))
    assert caught.value.reason is StatementReason.BODY_MISMATCH


@given(data=st.data())
def test_statement_any_flipped_bit_changes_the_challenge_or_is_refused(data: st.DataObject) -> None:
    """Flipping any bit of a statement either breaks parsing or changes what must be signed."""
    model, make = data.draw(st.sampled_from(MODELS))
    original = b.raw(make())
    signed = s.decode_statement(original, model)
    bit = data.draw(st.integers(0, len(original) * 8 - 1))
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    try:
        other = s.decode_statement(bytes(flipped), model)
    except StatementError:
        return
    assert other.challenge != signed.challenge
