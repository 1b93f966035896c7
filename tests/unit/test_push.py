"""Web Push building blocks: the host allowlist, coalescing windows, the padded payload
and its RFC 8291 encryption (decrypted by the stand-in's browser side), VAPID tokens and
the key file, retry delays."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime

import pytest
from py_vapid import jwt as vapid_jwt

from codexrelay.errors import AppError
from codexrelay.relay.config import PushSettings
from codexrelay.relay.push.coalesce import Coalescer
from codexrelay.relay.push.endpoints import check_endpoint, host_allowed
from codexrelay.relay.push.sender import PushSender, retry_delay
from codexrelay.relay.push.subscriptions import clean_kinds
from codexrelay.relay.push.vapid import ensure_vapid_key, load_vapid_key, vapid_key_path
from codexrelay.relay.push.webpush import PADDED_BYTES, encrypt, payload
from codexrelay.relay.storage.jsonfile import StateError
from codexrelay.relay.storage.memory import MemoryStore
from codexrelay.relay.storage.records import PushSubscriptionRecord
from tests.fakes.push_service import PushServiceStandIn

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("fcm.googleapis.com", True),
        ("FCM.googleapis.com", True),
        ("web.push.apple.com", True),
        ("a.b.push.apple.com", True),
        ("push.apple.com", False),
        ("evilpush.apple.com", False),
        ("fcm.googleapis.com.evil", False),
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("127.0.0.2", False),
    ],
)
def test_host_allowlist(host, allowed):
    """Exact names, or any name under a *.domain entry; never the domain itself."""
    hosts = ["fcm.googleapis.com", "*.push.apple.com", "127.0.0.1", "::1"]
    assert host_allowed(host, hosts) is allowed


def test_plain_http_only_for_a_listed_loopback_host():
    """http:// is refused for a listed public host and accepted for a listed loopback."""
    hosts = ["fcm.googleapis.com", "127.0.0.1"]
    assert check_endpoint("http://127.0.0.1:9/p", hosts)
    with pytest.raises(AppError) as refused:
        check_endpoint("http://fcm.googleapis.com/p", hosts)
    assert refused.value.code.value == "push-endpoint-not-allowed"
    with pytest.raises(AppError):
        check_endpoint("https://fcm.googleapis.com:99999/p", hosts)
    with pytest.raises(AppError):
        check_endpoint("https://fcm.googleapis.com/" + "a" * 3000, hosts)


def test_coalescer_sends_first_holds_latest_and_reopens():
    """First at once; later ones in the window replace each other and are released as one
    at the window's end; after the window the next goes at once again."""
    c: Coalescer[str] = Coalescer(30)
    assert c.offer("t", "a", 0) is None
    first = c.offer("t", "b", 5)
    assert first is not None
    assert (first.due, first.schedule) == (30, True)
    second = c.offer("t", "c", 10)
    assert second is not None
    assert second.schedule is False
    assert c.offer("other", "x", 10) is None
    assert c.release("t", 30) == "c"
    assert c.release("t", 30) is None
    assert c.offer("t", "d", 59) is not None  # the release opened a new window
    assert c.release("t", 60) == "d"
    assert c.offer("t", "e", 91) is None
    assert c.forget(200) == 2
    assert len(c) == 0


def test_payload_is_padded_and_holds_only_kind_ws_id():
    """Every payload has one length, whatever its kind; JSON ignores the padding."""
    sizes = {len(payload(k, "ws_x", "tsk_y")) for k in ("finished", "approval-needed")}
    sizes.add(len(payload("new-device", None, None)))
    assert sizes == {PADDED_BYTES}
    assert json.loads(payload("failed", "ws_a", "tsk_b")) == {
        "kind": "failed",
        "ws": "ws_a",
        "id": "tsk_b",
    }
    assert len(payload("failed", "w", "x" * 300)) % 64 == 0


def test_encryption_round_trips_through_the_browser_side():
    """RFC 8291 aes128gcm made by http_ece for the browser's keys decrypts on its side, with
    a fresh sender key each time."""
    stand_in = PushServiceStandIn().start()
    try:
        device = stand_in.new_device()
        keys = device.subscription_json()["keys"]
        body = payload("finished", "ws_1", "tsk_1")
        one, two = encrypt(body, **keys), encrypt(body, **keys)
        assert one != two
        assert stand_in._decrypt(device, one, {}) == body
    finally:
        stand_in.stop()


def test_vapid_key_file_and_tokens(tmp_path):
    """Made once 0600, loaded again the same; a token verifies with the public key, names
    aud/exp/sub, and is reused for one audience; a key readable by others is refused."""
    key, created = ensure_vapid_key(tmp_path)
    again, created_again = ensure_vapid_key(tmp_path)
    assert (created, created_again) == (True, False)
    assert again.public_b64 == key.public_b64
    assert stat.S_IMODE(vapid_key_path(tmp_path).stat().st_mode) == 0o600
    header = key.authorization("https://fcm.googleapis.com", contact="mailto:a@b.c", now=1e9)
    assert key.authorization("https://fcm.googleapis.com", contact="x", now=1e9 + 60) == header
    params = dict(p.split("=", 1) for p in header.removeprefix("vapid ").split(","))
    claims = vapid_jwt.decode(params["t"], params["k"])
    assert claims == {"aud": "https://fcm.googleapis.com", "exp": 10**9 + 43200,
                      "sub": "mailto:a@b.c"}  # fmt: skip
    assert params["k"] == key.public_b64
    vapid_key_path(tmp_path).chmod(0o644)
    with pytest.raises(StateError, match="readable by others"):
        load_vapid_key(tmp_path)


def test_rotation_drops_subscriptions_of_the_old_key(tmp_path):
    """At start, subscriptions made for another VAPID key are gone (browsers bind them to
    the key they subscribed with)."""
    store = MemoryStore("inst", NOW)
    sender = PushSender(PushSettings(), store, contact="mailto:a@b.c", clock=lambda: NOW)
    sender.open(tmp_path)
    assert sender.key is not None
    for key_id in (sender.key.key_id, "0123456789abcdef"):
        store.push_subscriptions.add(
            PushSubscriptionRecord(
                id=f"psub_{key_id}", user_id="u", session_id="s", endpoint=f"https://x/{key_id}",
                p256dh="p", auth="a", kinds=clean_kinds(None), vapid_key_id=key_id,
                created_at=NOW,
            )
        )  # fmt: skip
    assert sender.open(tmp_path) is False
    assert [s.vapid_key_id for s in store.push_subscriptions.all()] == [sender.key.key_id]


def test_retry_delays_grow_and_honour_retry_after():
    """x4 a try within +-20%, capped at 300 s; a longer Retry-After wins (also capped)."""
    assert 1.6 <= retry_delay(2, 1, None) <= 2.4
    assert 25.6 <= retry_delay(2, 3, None) <= 38.4
    assert retry_delay(60, 9, None) == 300
    assert retry_delay(0.01, 1, "120") == 120
    assert retry_delay(0.01, 1, "99999") == 300
    assert retry_delay(0.01, 1, "soon") < 1


def test_kinds_keep_new_device_and_order():
    """new-device cannot be turned off; kinds come back in one order."""
    assert clean_kinds([]) == ["new-device"]
    assert clean_kinds(["failed", "finished"]) == ["finished", "failed", "new-device"]
    assert len(clean_kinds(None)) == 5
