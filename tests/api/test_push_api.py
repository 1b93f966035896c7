"""Push subscriptions over HTTP: the VAPID key, the endpoint allowlist, a person's own
devices, and subscriptions ending with the session, the membership or the push service's
word (404/410). Deliveries go to a real loopback push service stand-in."""

from __future__ import annotations

import stat
import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from codexrelay.relay.access import sessions
from codexrelay.relay.push.vapid import vapid_key_path
from codexrelay.relay.storage.records import Role
from tests.api.conftest import ClientFactory, login, services_of, sign_in_as, sign_in_with_role
from tests.api.push_helpers import (
    notify_in_loop,
    push_config,
    settled,
    subscribe,
    wait_for_deliveries,
)
from tests.softauthn import b64url_decode

SUBS = "/api/v1/me/push-subscriptions"


@pytest.fixture
def client(make_client: ClientFactory) -> Iterator[TestClient]:
    """A relay that may send to the stand-in, signed in as the owner."""
    with make_client(**push_config()) as c:
        login(c)
        yield c


def _wid(client: TestClient) -> str:
    return client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]


def test_vapid_public_key_is_served_and_kept_private_on_disk(client):
    """The public key is an uncompressed P-256 point; the private key file is 0600."""
    res = client.get("/api/v1/push/vapid-public-key")
    assert res.status_code == 200
    raw = b64url_decode(res.json()["publicKey"])
    assert len(raw) == 65
    assert raw[0] == 4
    path = vapid_key_path(services_of(client).config.data_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in path.read_bytes()
    client.cookies.clear()
    assert client.get("/api/v1/push/vapid-public-key").status_code == 401


def test_subscribe_lists_only_safe_fields(client, stand_in):
    """201 with id, kinds, createdAt, userAgent; the endpoint and keys never come back."""
    device = stand_in.new_device()
    res = client.post(
        SUBS,
        json={"subscription": device.subscription_json(), "kinds": ["finished"]},
        headers={"User-Agent": "Mozilla/5.0 (iPhone) Safari\x07"},
    )
    assert res.status_code == 201, res.text
    sub = res.json()["subscription"]
    assert sub["kinds"] == ["finished", "new-device"]  # new-device is always on
    assert sub["userAgent"] == "Mozilla/5.0 (iPhone) Safari"
    assert sub["current"] is True
    assert sub["service"] == "127.0.0.1"
    listed = client.get(SUBS).json()["subscriptions"]
    assert [s["id"] for s in listed] == [sub["id"]]
    text = client.get(SUBS).text
    assert device.endpoint not in text
    assert device.p256dh not in text


ENDPOINTS = [
    ("https://fcm.googleapis.com/fcm/send/abc", True),
    ("https://web.push.apple.com/QGm0", True),
    ("https://wns2-par02p.notify.windows.com/w/?token=x", True),
    ("https://push.apple.com/x", False),  # *.push.apple.com is not push.apple.com
    ("http://fcm.googleapis.com/fcm/send/abc", False),  # plain http to a real service
    ("https://evil.example/fcm.googleapis.com", False),
    ("https://fcm.googleapis.com.evil.example/x", False),
    ("https://user:pw@fcm.googleapis.com/x", False),
    ("http://127.0.0.2:9/push/x", False),  # loopback, but not listed
    ("http://localhost:9/push/x", False),
    ("https://10.0.0.1/push/x", False),
    ("https://169.254.169.254/latest/meta-data", False),
    ("ftp://fcm.googleapis.com/x", False),
    ("fcm.googleapis.com/x", False),
]


def test_endpoint_allowlist(make_client, stand_in):
    """Only https to a listed push service host (plain http only for a listed loopback
    host): anything else is 400 push-endpoint-not-allowed and nothing is stored."""
    hosts = ["127.0.0.1", "fcm.googleapis.com", "*.push.apple.com", "*.notify.windows.com"]
    body = stand_in.new_device().subscription_json()
    with make_client(**push_config(allowedHosts=hosts)) as c:
        login(c)
        for endpoint, allowed in ENDPOINTS:
            res = c.post(SUBS, json={"subscription": body | {"endpoint": endpoint}})
            if allowed:
                assert res.status_code == 201, (endpoint, res.text)
                assert c.delete(f"{SUBS}/{res.json()['subscription']['id']}").status_code == 204
            else:
                assert res.status_code == 400, endpoint
                assert res.json()["error"] == "push-endpoint-not-allowed", endpoint
        assert c.get(SUBS).json()["subscriptions"] == []


def test_bad_keys_and_unknown_fields_are_refused(client, stand_in):
    """Keys must be a P-256 point and a 16-byte secret; unknown fields are 422."""
    body = stand_in.new_device().subscription_json()
    not_on_curve = body | {"keys": {"p256dh": "BA" + "A" * 85, "auth": body["keys"]["auth"]}}
    res = client.post(SUBS, json={"subscription": not_on_curve})
    assert (res.status_code, res.json()["error"]) == (400, "invalid-request")
    short_auth = body | {"keys": {"p256dh": body["keys"]["p256dh"], "auth": "AAAA"}}
    assert client.post(SUBS, json={"subscription": short_auth}).status_code == 400
    assert client.post(SUBS, json={"subscription": body, "extra": 1}).status_code == 422
    assert client.post(SUBS, json={"subscription": body, "kinds": ["prompt"]}).status_code == 422
    assert client.get(SUBS).json()["subscriptions"] == []


def test_one_subscription_per_session_and_per_endpoint(client, stand_in):
    """A session's new subscription replaces its old one; an endpoint moves to whoever
    subscribed with it last."""
    first = subscribe(client, stand_in.new_device())
    second_device = stand_in.new_device()
    second = subscribe(client, second_device)
    assert [s["id"] for s in client.get(SUBS).json()["subscriptions"]] == [second["id"]]
    assert first["id"] != second["id"]
    sign_in_with_role(client, _wid_of(client), Role.MEMBER)
    taken = subscribe(client, second_device)
    assert [s["id"] for s in client.get(SUBS).json()["subscriptions"]] == [taken["id"]]
    assert services_of(client).store.push_subscriptions.count() == 1


def _wid_of(client: TestClient) -> str:
    store = services_of(client).store
    return store.workspaces.all()[0].id


def test_kinds_toggle_and_ownership(client, stand_in):
    """PATCH chooses kinds (new-device stays); another person's subscription is 404 for
    every verb, and theirs stays untouched."""
    mine = subscribe(client, stand_in.new_device())
    res = client.patch(f"{SUBS}/{mine['id']}", json={"kinds": []})
    assert res.json()["subscription"]["kinds"] == ["new-device"]
    res = client.patch(f"{SUBS}/{mine['id']}", json={"kinds": ["failed", "approval-needed"]})
    assert res.json()["subscription"]["kinds"] == ["approval-needed", "failed", "new-device"]
    sign_in_with_role(client, _wid_of(client), Role.ADMIN)
    for method, path, body in (
        ("PATCH", f"{SUBS}/{mine['id']}", {"kinds": []}),
        ("DELETE", f"{SUBS}/{mine['id']}", None),
        ("POST", f"{SUBS}/{mine['id']}/test", None),
    ):
        res = client.request(method, path, json=body)
        assert (res.status_code, res.json()["error"]) == (404, "not-found"), method
    assert services_of(client).store.push_subscriptions.get(mine["id"]) is not None


def test_test_notification_reaches_only_that_device(client, stand_in):
    """202, then exactly one {"kind": "test"} on that device and nothing elsewhere; a
    stuck button is rate-limited."""
    one, other = stand_in.new_device(), stand_in.new_device()
    sub = subscribe(client, one)
    login(client)  # a second session of the same owner
    subscribe(client, other)
    assert client.post(f"{SUBS}/{sub['id']}/test").status_code == 202
    (delivery,) = wait_for_deliveries(stand_in, 1)
    assert (delivery.token, delivery.payload) == (one.token, {"kind": "test"})
    settled(client, lambda s: s.sent == 1, "the push service to take it")
    listed = {s["id"]: s for s in client.get(SUBS).json()["subscriptions"]}
    assert listed[sub["id"]]["lastSuccessAt"] is not None
    assert [s["lastSuccessAt"] for i, s in listed.items() if i != sub["id"]] == [None]
    statuses = [client.post(f"{SUBS}/{sub['id']}/test").status_code for _ in range(8)]
    assert 429 in statuses
    assert stand_in.errors == []


def test_delete_unsubscribes(client, stand_in):
    """DELETE removes one's own subscription; nothing more reaches that device."""
    device = stand_in.new_device()
    sub = subscribe(client, device)
    assert client.delete(f"{SUBS}/{sub['id']}").status_code == 204
    assert client.get(SUBS).json()["subscriptions"] == []
    assert notify_in_loop(client, "pair-request", _wid(client), "pr_1") == 0


def _devices_left(client: TestClient) -> int:
    return services_of(client).store.push_subscriptions.count()


def test_sign_out_and_session_revocation_delete_subscriptions(client, stand_in):
    """Logout, ending one session, the owner ending all of a user's sessions, the
    per-user session cap and expiry each take that session's subscription with them."""
    services = services_of(client)
    subscribe(client, stand_in.new_device())
    assert client.post("/api/v1/auth/logout").status_code == 204
    assert _devices_left(client) == 0

    login(client)
    subscribe(client, stand_in.new_device())
    current = client.get("/api/v1/me").json()["session"]["id"]
    login(client)
    assert client.delete(f"/api/v1/me/sessions/{current}").status_code == 204
    assert _devices_left(client) == 0

    member = sign_in_with_role(client, _wid_of(client), Role.MEMBER)
    subscribe(client, stand_in.new_device())
    login(client)
    assert client.delete(f"/api/v1/users/{member}/sessions").status_code == 204
    assert _devices_left(client) == 0

    sign_in_as(client, member)
    subscribe(client, stand_in.new_device())
    for _ in range(services.config.max_sessions_per_user):
        sign_in_as(client, member)
    assert _devices_left(client) == 0

    sign_in_as(client, member)
    subscribe(client, stand_in.new_device())
    services.clock.advance(3601)  # type: ignore[attr-defined]
    assert sessions.prune_expired(services.store, services.now()) >= 1  # the minute's sweep
    assert _devices_left(client) == 0


def test_leaving_and_removal_delete_subscriptions(client, stand_in):
    """Removing a member, or a member leaving, deletes their devices' subscriptions."""
    wid = _wid(client)
    removed = sign_in_with_role(client, wid, Role.MEMBER)
    subscribe(client, stand_in.new_device())
    login(client)
    assert client.delete(f"/api/v1/workspaces/{wid}/members/{removed}").status_code == 204
    assert _devices_left(client) == 0

    leaver = sign_in_with_role(client, wid, Role.VIEWER)
    subscribe(client, stand_in.new_device())
    assert client.delete(f"/api/v1/workspaces/{wid}/members/{leaver}").status_code == 204
    assert _devices_left(client) == 0


def test_gone_subscription_is_removed(client, stand_in):
    """A push service's 410 (and 404) removes the subscription; others are kept."""
    gone, kept = stand_in.new_device(), stand_in.new_device()
    sub = subscribe(client, gone)
    login(client)
    subscribe(client, kept)
    stand_in.gone.add(gone.token)
    assert notify_in_loop(client, "pair-request", _wid(client), "pr_x") == 2
    settled(client, lambda s: s.gone == 1 and s.sent == 1, "410 and one delivery")
    assert services_of(client).store.push_subscriptions.get(sub["id"]) is None
    assert _devices_left(client) == 1
    assert [d.token for d in stand_in.received()] == [kept.token]


def test_busy_push_service_is_retried(client, stand_in):
    """429 and 5xx are retried with backoff; the notification arrives once."""
    device = stand_in.new_device()
    subscribe(client, device)
    stand_in.scripted[device.token] = [503, 429, 500]
    notify_in_loop(client, "pair-request", _wid(client), "pr_y")
    stats = settled(client, lambda s: s.sent == 1, "the fourth try to succeed")
    assert stats.retried == 3
    assert len(stand_in.received(device)) == 1
    assert stand_in.requests == 4


def test_retries_stop_after_max_attempts(make_client, stand_in):
    """A service that keeps failing is tried push.maxAttempts times, then given up."""
    with make_client(**push_config(maxAttempts=2)) as c:
        login(c)
        device = stand_in.new_device()
        subscribe(c, device)
        stand_in.scripted[device.token] = [503] * 10
        notify_in_loop(c, "pair-request", _wid(c), "pr_z")
        stats = settled(c, lambda s: s.failed == 1, "the notification to be given up")
        assert (stats.retried, stats.sent, stand_in.requests) == (1, 0, 2)
        assert _devices_left(c) == 1  # busy is not gone


def test_bursts_coalesce_per_thing_per_device(make_client, stand_in):
    """Five notifications about one task in a window: the first goes at once, the rest
    become one more at the window's end; five different tasks go as five."""
    with make_client(**push_config(coalesceSec=0.5)) as c:
        login(c)
        subscribe(c, stand_in.new_device())
        services, wid = services_of(c), _wid(c)
        for _ in range(5):
            notify_in_loop(c, "pair-request", wid, "pr_same")
        for i in range(5):
            notify_in_loop(c, "pair-request", wid, f"pr_{i}")
        wait_for_deliveries(stand_in, 7, what="1 + 5 at once, then the held one")
        ids = [d.payload["id"] for d in stand_in.received()]
        assert ids.count("pr_same") == 2
        assert sorted(i for i in ids if i != "pr_same") == [f"pr_{i}" for i in range(5)]
        assert services.push.stats.coalesced == 4


def test_disabled_push_refuses_and_sends_nothing(make_client, stand_in):
    """push.enabled false: 403 feature-disabled for the key and for subscribing."""
    with make_client(**push_config(enabled=False)) as c:
        login(c)
        res = c.get("/api/v1/push/vapid-public-key")
        assert (res.status_code, res.json()["error"]) == (403, "feature-disabled")
        res = c.post(SUBS, json={"subscription": stand_in.new_device().subscription_json()})
        assert res.status_code == 403
        assert notify_in_loop(c, "pair-request", _wid(c), "pr_1") == 0


def test_expired_session_gets_nothing_before_the_sweep(client, stand_in):
    """A subscription whose session expired is not sent to even before the sweep runs."""
    services = services_of(client)
    member = sign_in_with_role(client, _wid_of(client), Role.ADMIN)
    subscribe(client, stand_in.new_device())
    session = services.store.sessions.of_user(member)[0]
    session.expires_at = services.now()
    services.store.sessions.save(session)
    assert notify_in_loop(client, "pair-request", _wid_of(client), "pr_1") == 0
    assert sessions.prune_expired(services.store, services.now()) == 1


def _claims(client: TestClient, count: int) -> list[int]:
    """``count`` agents claim pairing codes (each one notifies the owner's devices); the
    status each claim got."""
    wid = _wid(client)
    statuses = []
    for i in range(count):
        code = client.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
        body = {"code": code, "agentId": f"box{i}", "label": "Box"}
        statuses.append(client.post("/api/v1/agent/pair", json=body).status_code)
    return statuses


def test_hanging_push_service_never_holds_up_a_request(make_client, stand_in):
    """With the push service accepting connections but never answering, every request
    that triggers a notification still succeeds; the queue stays bounded (extra ones are
    dropped and counted) and at most push.concurrency requests wait on the service."""
    stand_in.hang = threading.Event()
    with make_client(**push_config(concurrency=1, queueSize=10)) as c:
        login(c)
        subscribe(c, stand_in.new_device())
        assert _claims(c, 30) == [202] * 30
        stats = services_of(c).push.stats
        assert stats.queued + stats.dropped == 30
        assert stats.dropped >= 30 - 10 - 1
        assert stats.sent == 0
        assert stand_in.requests <= 1
        stand_in.hang.set()


def test_unreachable_push_service_never_fails_a_request(make_client, stand_in):
    """Nothing listening at the endpoint: the claims succeed, each notification is tried
    push.maxAttempts times and then given up, and the subscription is kept."""
    with make_client(**push_config(maxAttempts=2)) as c:
        login(c)
        subscribe(c, stand_in.new_device())
        stand_in.stop()
        assert _claims(c, 5) == [202] * 5
        stats = settled(c, lambda s: s.failed == 5, "every notification to be given up")
        assert (stats.sent, stats.retried) == (0, 5)
        assert _devices_left(c) == 1
