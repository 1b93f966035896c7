"""Sealed envelopes: HPKE task keys, per-sender AES-GCM, signatures, order (TRUST.md §5, §10)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.bindings._rust import openssl as rust_openssl
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from codexrelay.e2e import keys
from codexrelay.e2e.envelope import (
    EnvelopeError,
    EnvelopeReason,
    Receiver,
    Sealer,
    hpke_suite,
    new_task_key,
    pad,
    padded_size,
    unpad,
    unwrap_task_key,
    wrap_task_key,
)
from codexrelay.e2e.wire import b64u, b64u_decode

VECTORS = json.loads(
    (Path(__file__).parents[2] / "fixtures" / "hpke_rfc9180_vectors.json").read_text()
)
TASK = "0b7f0000-0000-4000-8000-000000000001"


def recipient_key(vector: dict[str, Any]) -> keys.KexKey:
    """The vector's recipient private key as a ``cryptography`` key."""
    raw = bytes.fromhex(vector["skRm"])
    if vector["kem_id"] == 0x20:
        return X25519PrivateKey.from_private_bytes(raw)
    return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"kem{v['kem_id']:#x}")
def test_hpke_rfc9180_vectors_open(vector: dict[str, Any]) -> None:
    """RFC 9180 vectors for the suites we use: the recipient key matches and seq 0 opens."""
    private = recipient_key(vector)
    assert keys.public_raw(private).hex() == vector["pkRm"]
    suite = hpke_suite("c25519" if vector["kem_id"] == 0x20 else "p256")
    first = vector["encryptions"][0]
    blob = bytes.fromhex(vector["enc"]) + bytes.fromhex(first["ct"])
    # Single-shot HPKE is the context's first encryption; cryptography's public API has no
    # AAD, so its test hook with AAD checks the vector exactly.
    opened = rust_openssl.hpke._decrypt_with_aad(
        suite, blob, private, info=bytes.fromhex(vector["info"]), aad=bytes.fromhex(first["aad"])
    )
    assert opened.hex() == first["pt"]
    assert first["nonce"] == vector["base_nonce"]


@pytest.mark.parametrize("suite", ["c25519", "p256"])
def test_task_key_wrap_round_trip_and_binding(suite: str) -> None:
    """K_t opens for its recipient, workspace and task only."""
    private = keys.generate_kex_key(suite)  # type: ignore[arg-type]
    task_key = new_task_key()
    wrap = wrap_task_key(
        task_key, private.public_key(), ws="ws_7", task=TASK, recipient_key_id="dv_1#k1"
    )
    assert unwrap_task_key(wrap, private, ws="ws_7", task=TASK) == task_key
    for ws, task, to in [
        ("ws_8", TASK, "dv_1#k1"),
        ("ws_7", TASK[:-1] + "2", "dv_1#k1"),
        ("ws_7", TASK, "dv_2#k1"),
    ]:
        moved = wrap.model_copy(update={"to": to})
        with pytest.raises(EnvelopeError) as caught:
            unwrap_task_key(moved, private, ws=ws, task=task)
        assert caught.value.reason is EnvelopeReason.NO_KEY
    other = keys.generate_kex_key(suite)  # type: ignore[arg-type]
    with pytest.raises(EnvelopeError):
        unwrap_task_key(wrap, other, ws="ws_7", task=TASK)


@pytest.mark.parametrize(
    ("length", "size"),
    [(0, 1024), (1023, 1024), (1024, 2048), (16383, 16384), (16384, 32768), (40000, 49152)],
)
def test_padding_sizes(length: int, size: int) -> None:
    """Next 1 KiB below 16 KiB, then next 16 KiB; the 0x80 marker counts."""
    assert padded_size(length) == size
    data = bytes([7]) * length
    assert len(pad(data)) == size
    assert unpad(pad(data)) == data


def test_padding_non_minimal_refused() -> None:
    """A padding longer than the rule makes is refused (it would be a covert size channel)."""
    with pytest.raises(EnvelopeError):
        unpad(b"abc\x80" + bytes(2048 - 4))
    with pytest.raises(EnvelopeError):
        unpad(bytes(1024))


def make_stream(suite: str = "c25519", **sealer: Any) -> tuple[Sealer, Receiver, keys.SigningKey]:
    """An agent's sealer and a phone's receiver for one task."""
    task_key = new_task_key()
    signing = keys.generate_signing_key(suite)  # type: ignore[arg-type]
    out = Sealer(
        task_key=task_key,
        ws="ws_7",
        agent="ag_3",
        task=TASK,
        sender="ag_3#k1",
        signing_key=signing,
        **sealer,
    )
    receiver = Receiver(task_key=task_key, ws="ws_7", agent="ag_3", task=TASK)
    return out, receiver, signing


@pytest.mark.parametrize("suite", ["c25519", "p256"])
def test_envelope_round_trip_signed(suite: str) -> None:
    """Sealed and signed by the agent, opened in order by a reader."""
    sealer, receiver, signing = make_stream(suite)
    public = signing.public_key()
    texts = [b"hello", b"x" * 20_000, b""]
    opened = [receiver.open(sealer.seal("task.out", t), sender_key=public) for t in texts]  # type: ignore[arg-type]
    assert [o.plaintext for o in opened] == texts
    assert [o.header.seq for o in opened] == [0, 1, 2]
    assert opened[1].header.pad == 32768
    assert receiver.counters.accepted == 3


def test_envelope_header_is_relay_visible_and_content_is_not() -> None:
    """The header shows ids, seq and padded size; the prompt is nowhere in the bytes."""
    sealer, _, _ = make_stream()
    data = sealer.seal("task.submit", b"CANARY-PROMPT-42")
    wire = json.loads(data)
    header = json.loads(b64u_decode(wire["hdr"], max_bytes=1024))
    assert header["from"] == "ag_3#k1"
    assert header["pad"] == 1024
    assert b"CANARY" not in data
    assert b"CANARY" not in b64u_decode(wire["ct"], max_bytes=4096)


def test_envelope_forged_by_a_member_holding_the_task_key_refused() -> None:
    """A reader holds K_t and can make valid AEAD, but not the agent's signature (§2)."""
    sealer, receiver, signing = make_stream()
    forger = Sealer(
        task_key=sealer.task_key,
        ws="ws_7",
        agent="ag_3",
        task=TASK,
        sender="ag_3#k1",
        signing_key=keys.generate_signing_key("c25519"),
        epoch=sealer.epoch,
    )
    with pytest.raises(EnvelopeError) as caught:
        receiver.open(forger.seal("task.out", b"rm -rf /"), sender_key=signing.public_key())
    assert caught.value.reason is EnvelopeReason.BAD_SIGNATURE
    unsigned = Sealer(
        task_key=sealer.task_key,
        ws="ws_7",
        agent="ag_3",
        task=TASK,
        sender="ag_3#k1",
        epoch=sealer.epoch,
    )
    with pytest.raises(EnvelopeError) as caught:
        receiver.open(unsigned.seal("task.out", b"x"), sender_key=signing.public_key())
    assert caught.value.reason is EnvelopeReason.MISSING_SIGNATURE
    assert receiver.counters.failed == 2


def test_envelope_for_another_task_refused() -> None:
    """An envelope moved to another task, workspace or agent is refused before decryption."""
    sealer, _, signing = make_stream()
    data = sealer.seal("task.out", b"x")
    for ws, agent, task in [
        ("ws_8", "ag_3", TASK),
        ("ws_7", "ag_4", TASK),
        ("ws_7", "ag_3", TASK[:-1] + "9"),
    ]:
        other = Receiver(task_key=sealer.task_key, ws=ws, agent=agent, task=task)
        with pytest.raises(EnvelopeError) as caught:
            other.open(data, sender_key=signing.public_key())
        assert caught.value.reason is EnvelopeReason.WRONG_TASK


def test_envelope_drop_duplicate_reorder_detected() -> None:
    """seq must be last + 1: a repeat is a duplicate, a jump a gap, and both are counted."""
    sealer, receiver, signing = make_stream()
    public = signing.public_key()
    env = [sealer.seal("task.out", f"chunk {i}".encode()) for i in range(4)]
    receiver.open(env[0], sender_key=public)
    for data, reason in [(env[0], EnvelopeReason.DUPLICATE), (env[2], EnvelopeReason.GAP)]:
        with pytest.raises(EnvelopeError) as caught:
            receiver.open(data, sender_key=public)
        assert caught.value.reason is reason
    assert receiver.open(env[1], sender_key=public).plaintext == b"chunk 1"
    assert receiver.open(env[2], sender_key=public).plaintext == b"chunk 2"
    assert (receiver.counters.duplicates, receiver.counters.gaps) == (1, 1)


def test_envelope_restarted_sender_starts_a_new_stream() -> None:
    """A new epoch is a new (sender, epoch) stream starting at 0, with its own key."""
    sealer, receiver, signing = make_stream()
    receiver.open(sealer.seal("task.out", b"a"), sender_key=signing.public_key())
    restarted = Sealer(
        task_key=sealer.task_key,
        ws="ws_7",
        agent="ag_3",
        task=TASK,
        sender="ag_3#k1",
        signing_key=signing,
    )
    assert restarted.epoch != sealer.epoch
    assert (
        receiver.open(restarted.seal("task.out", b"b"), sender_key=signing.public_key()).header.seq
        == 0
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_envelope_any_flipped_bit_refused(data: st.DataObject) -> None:
    """Flipping any bit of an envelope makes the receiver drop it."""
    sealer, receiver, signing = make_stream()
    wraps = [
        wrap_task_key(
            sealer.task_key,
            keys.generate_kex_key("c25519").public_key(),
            ws="ws_7",
            task=TASK,
            recipient_key_id="dv_1",
        )
    ]
    good = sealer.seal("task.out", b"output line", wraps=wraps)
    bit = data.draw(st.integers(0, len(good) * 8 - 1))
    flipped = bytearray(good)
    flipped[bit // 8] ^= 1 << (bit % 8)
    if json.loads(good) == _loads_or_none(bytes(flipped)) and not _keys_changed(
        good, bytes(flipped)
    ):
        return  # unreachable in practice: a flip always changes the JSON value
    try:
        opened = receiver.open(bytes(flipped), sender_key=signing.public_key())
    except EnvelopeError:
        return
    # Only the unsigned, unauthenticated key wraps may change; content never does.
    assert opened.plaintext == b"output line"
    assert _keys_changed(good, bytes(flipped))


def _loads_or_none(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None


def _keys_changed(good: bytes, other: bytes) -> bool:
    parsed = _loads_or_none(other)
    if not isinstance(parsed, dict):
        return False
    a = dict(json.loads(good))
    b = dict(parsed)
    a.pop("keys", None)
    b.pop("keys", None)
    return a == b


@settings(max_examples=60, deadline=None)
@given(order=st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_envelope_any_drop_duplicate_or_reorder_is_detected(order: list[int]) -> None:
    """Delivering envelopes in any order other than 0,1,2,... raises gap or duplicate alarms,
    and what is shown is always a prefix of what was sent."""
    sealer, receiver, signing = make_stream()
    env = [sealer.seal("task.out", bytes([i])) for i in range(6)]
    shown: list[int] = []
    reasons: set[EnvelopeReason] = set()
    for index in order:
        try:
            shown.append(receiver.open(env[index], sender_key=signing.public_key()).plaintext[0])
        except EnvelopeError as exc:
            reasons.add(exc.reason)
    assert reasons <= {EnvelopeReason.GAP, EnvelopeReason.DUPLICATE}
    assert shown == list(range(len(shown)))
    in_order = order[: len(shown)] == list(range(len(shown))) and len(order) == len(shown)
    alarms = receiver.counters.gaps + receiver.counters.duplicates
    assert (alarms == 0) == in_order


def test_envelope_bad_prev_detected() -> None:
    """A sender's envelopes chain; a substituted predecessor breaks the link."""
    sealer, receiver, signing = make_stream(epoch=b"\x01" * 8)
    twin, _, _ = make_stream(epoch=b"\x01" * 8)
    twin.task_key = sealer.task_key
    first = sealer.seal("task.out", b"a")
    receiver.open(first, sender_key=signing.public_key())
    other = Sealer(
        task_key=sealer.task_key,
        ws="ws_7",
        agent="ag_3",
        task=TASK,
        sender="ag_3#k1",
        signing_key=signing,
        epoch=b"\x01" * 8,
        seq=1,
        prev=b64u(bytes(32)),
    )
    with pytest.raises(EnvelopeError) as caught:
        receiver.open(other.seal("task.out", b"b"), sender_key=signing.public_key())
    assert caught.value.reason is EnvelopeReason.BAD_PREV


def test_envelope_caps() -> None:
    """Oversized envelopes and plaintexts are refused up front."""
    _, receiver, _ = make_stream()
    with pytest.raises(EnvelopeError) as caught:
        receiver.open(b"{" + b" " * (1024 * 1024) + b"}", sender_key=None)
    assert caught.value.reason is EnvelopeReason.TOO_LARGE
    with pytest.raises(ValueError, match="at most"):
        pad(bytes(44 * 16 * 1024))
