"""Helpers for in-process API tests."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from codexrelay.relay.access import identity, sessions
from codexrelay.relay.app import create_app
from codexrelay.relay.config import load_relay_config
from codexrelay.relay.services import Services
from codexrelay.relay.storage.backends import open_configured_store
from codexrelay.relay.storage.records import Role
from tests.helpers import FakeClock, write_relay_config

ClientFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(
    tmp_path: Path, clock: FakeClock, storage_settings: dict[str, str]
) -> ClientFactory:
    """Build an in-process client for a relay with config overrides (camelCase keys)."""
    counter = itertools.count()

    @contextmanager
    def build(
        *, prepare: Callable[[FastAPI], None] | None = None, **overrides: Any
    ) -> Iterator[TestClient]:
        overrides.setdefault("storage", storage_settings)
        setup = write_relay_config(tmp_path / f"relay{next(counter)}", **overrides)
        config = load_relay_config(setup.config_path)
        store = open_configured_store(config, now=clock)
        app = create_app(config, store, clock=clock)
        if prepare is not None:
            prepare(app)
        base = config.public_origin if config.https else setup.base_url
        with TestClient(app, base_url=base, headers={"Origin": config.public_origin}) as client:
            client.setup = setup  # type: ignore[attr-defined]
            yield client

    return build


def services_of(client: TestClient) -> Services:
    """The app's service container, for arranging state through the domain layer."""
    app: FastAPI = client.app  # type: ignore[assignment]
    services: Services = app.state.services
    return services


def login(client: TestClient) -> None:
    """Sign the client in as the owner with the recovery token."""
    token = client.setup.token  # type: ignore[attr-defined]
    res = client.post("/api/v1/auth/bootstrap", json={"token": token})
    assert res.status_code == 200, res.text


def make_user(client: TestClient, workspace_id: str | None, role: Role) -> str:
    """A user made through the domain layer, a member of ``workspace_id`` with ``role``."""
    services = services_of(client)
    user = identity.create_user(
        services.store, name=f"{role.value} user", now=services.now(), rand=services.rand
    )
    if workspace_id:
        identity.set_membership(
            services.store,
            user_id=user.id,
            workspace_id=workspace_id,
            role=role,
            now=services.now(),
        )
    return user.id


def sign_in_as(client: TestClient, user_id: str) -> None:
    """Give the client a fresh passkey-style session of ``user_id`` (cookie replaced)."""
    services = services_of(client)
    issued = sessions.open_session(
        services.store,
        user_id=user_id,
        via="passkey",
        now=services.now(),
        ttl_sec=3600,
        max_per_user=20,
        secret=services.token_secret,
        rand=services.rand,
    )
    client.cookies.clear()
    client.cookies.set("codexrelay-session", issued.cookie_value)


def sign_in_with_role(client: TestClient, workspace_id: str | None, role: Role) -> str:
    """A new user with ``role`` in ``workspace_id``, signed in on ``client``."""
    user_id = make_user(client, workspace_id, role)
    sign_in_as(client, user_id)
    return user_id
