"""An in-process relay with one signed-in phone per kind of caller and one of every record.

The fuzzer and the credential proofs run every request against this world. Each request
starts from the same snapshot of the state (``reset``), so a generated logout, revocation
or removal cannot change what the next request is tested against.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.services import Services
from codexrelay.relay.storage.backends import open_configured_store
from codexrelay.relay.storage.records import State
from codexrelay.relay.tasks import lifecycle
from tests.helpers import FakeClock, RelaySetup, write_relay_config
from tests.softauthn import COOKIE, Phone, join_by_invite

ROLES = ("owner", "admin", "member", "viewer", "enrollment-locked", "anonymous")


@dataclass
class ApiWorld:
    """The relay, a cookie per caller, the ids of real records, and the state snapshot."""

    client: TestClient
    setup: RelaySetup
    cookies: dict[str, str | None]
    ids: dict[str, list[str]]
    agent_token: str
    poll_secret: str
    poll_request_id: str
    snapshot: State = field(repr=False)

    @property
    def services(self) -> Services:
        services: Services = self.client.app.state.services  # type: ignore[attr-defined]
        return services

    def reset(self) -> None:
        """Back to the snapshot: every request sees the same users, sessions and records."""
        self.services.store.load(self.snapshot.model_copy(deep=True))

    def headers(self, role: str) -> dict[str, str]:
        """The headers a phone of ``role`` sends: its cookie and the relay's own Origin."""
        cookie = self.cookies[role]
        headers = {"Origin": self.setup.origin}
        if cookie:
            headers["Cookie"] = f"{COOKIE}={cookie}"
        return headers


def _agent_with_task(owner: Phone, world_ids: dict[str, list[str]], wid: str) -> dict[str, str]:
    """Pair an agent through the real HTTP flow and record a task for it."""
    code = owner.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
    claim = owner.client.post(
        "/api/v1/agent/pair", json={"code": code, "agentId": "fuzzbox", "label": "Fuzz box"}
    ).json()
    owner.post(f"/api/v1/workspaces/{wid}/pair-requests/{claim['requestId']}/approve")
    res = owner.client.get(
        f"/api/v1/agent/pair/{claim['requestId']}",
        headers={"Authorization": f"Bearer {claim['pollSecret']}"},
    )
    token = res.json()["agentToken"]
    # A second claim stays pending, so its request id and poll secret are live credentials.
    code = owner.post(f"/api/v1/workspaces/{wid}/pairings", json={}).json()["code"]
    pending = owner.client.post(
        "/api/v1/agent/pair", json={"code": code, "agentId": "pendingbox", "label": "Pending"}
    ).json()
    world_ids["request_id"] += [claim["requestId"], pending["requestId"]]
    world_ids["agent_id"] += ["fuzzbox"]
    return {"token": token, "poll": pending["pollSecret"], "poll_id": pending["requestId"]}


@contextmanager
def api_world(directory: Path) -> Iterator[ApiWorld]:
    """Build the world once (module scope in the tests that use it)."""
    clock = FakeClock()
    setup = write_relay_config(
        directory,
        # Fuzzing is not brute force: every generated request is a first attempt.
        maxLoginAttemptsPerMinute=100000,
        maxPairAttemptsPerMinute=100000,
        globalAttemptsFactor=10000,
    )
    config = load_relay_config(setup.config_path)
    app = create_app(config, open_configured_store(config, now=clock), clock=clock)
    with TestClient(app, base_url=setup.base_url, headers={"Origin": setup.origin}) as client:
        owner = Phone(client).bootstrap(setup.token)
        wid = owner.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        phones = {role: join_by_invite(owner, wid, role, role.title()) for role in ROLES[1:4]}
        locked = Phone(client)
        invite = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "member"}).json()
        locked.post("/api/v1/invites/accept", json={"code": invite["code"], "name": "Locked"})
        pending = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "viewer"}).json()
        other = owner.post("/api/v1/workspaces", json={"name": "Elsewhere"}).json()["workspace"]

        ids: dict[str, list[str]] = {
            "wid": [wid, other["id"]],
            "user_id": [],
            "credential_id": [],
            "session_id": [],
            "invite_id": [invite["invite"]["id"], pending["invite"]["id"]],
            "request_id": [],
            "agent_id": [],
            "task_id": [],
        }
        agent = _agent_with_task(owner, ids, wid)
        services: Services = app.state.services
        store = services.store
        record = next(a for a in store.agents.all() if a.agent_id == "fuzzbox")
        request = lifecycle.TaskRequest(agent_id="fuzzbox", type="run_action", action_id="hello")
        made = lifecycle.create_task(
            store, request, agent=record, created_by=store.users.all()[0].id,
            now=clock(), rand=services.rand,
        )  # fmt: skip
        ids["task_id"].append(made.id)
        ids["user_id"] += [u.id for u in store.users.all()]
        ids["credential_id"] += [p.credential_id for p in store.passkeys.all()]
        ids["session_id"] += [s.token_hash for s in store.sessions.all()]
        ids["resume_session_id"] = [str(uuid.uuid4())]
        # Conversations and push subscriptions: ids of the right shape (none exists: a
        # route must still refuse the wrong caller before it looks the record up).
        ids["thread_id"] = [str(uuid.uuid4())]
        ids["approval_id"] = ["apr_0123456789ab"]
        ids["subscription_id"] = ["psub_0123456789ab"]

        cookies: dict[str, str | None] = {
            "owner": owner.cookie,
            **{role: phone.cookie for role, phone in phones.items()},
            "enrollment-locked": locked.cookie,
            "anonymous": None,
        }
        client.cookies.clear()
        yield ApiWorld(
            client=client,
            setup=setup,
            cookies=cookies,
            ids=ids,
            agent_token=agent["token"],
            poll_secret=agent["poll"],
            poll_request_id=agent["poll_id"],
            snapshot=store.document().model_copy(deep=True),
        )


def send(world: ApiWorld, method: str, url: str, **kwargs: Any) -> Any:
    """One request; an event stream is closed as soon as its status and headers are in."""
    world.client.cookies.clear()
    with world.client.stream(method, url, **kwargs) as res:
        if res.headers.get("content-type", "").startswith("text/event-stream"):
            res.is_stream_consumed = True
            res._content = b""
            return res
        res.read()
    world.client.cookies.clear()
    return res
