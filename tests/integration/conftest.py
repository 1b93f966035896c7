"""A relay with a paired agent, shared by the end-to-end task tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.agents import AgentProcess, default_workspace, pair_agent
from tests.helpers import RelayProcess, wait_until, write_relay_config

TERMINAL = {"completed", "failed", "cancelled", "rejected", "interrupted"}


@dataclass
class World:
    """A relay, the owner's phone client, the default workspace and a paired agent."""

    relay: RelayProcess
    phone: httpx.Client
    wid: str
    agent: AgentProcess
    dir: Path


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """A relay with write mode allowed on the relay side, and a paired agent."""
    setup = write_relay_config(tmp_path / "relay", features={"codexExecWrite": True})
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    phone = relay.login()
    wid = default_workspace(phone)
    agent = pair_agent(
        relay,
        phone,
        wid,
        tmp_path / "agent",
        actions={
            "hello": {"label": "Say hello", "argv": ["python3", "-c", "print('hello')"]},
            "env": {"label": "Print environment", "argv": ["env"]},
            "slow": {"label": "Sleep", "argv": ["sleep", "30"], "timeoutSec": 60},
            "quick-timeout": {"label": "Too slow", "argv": ["sleep", "30"], "timeoutSec": 1},
        },
    )
    world = World(relay, phone, wid, agent, tmp_path)
    yield world
    world.agent.stop()
    world.phone.close()
    relay.stop()


def submit(world: World, **body: object) -> httpx.Response:
    """Submit a task to the paired agent ``devbox``."""
    return world.phone.post(
        f"/api/v1/workspaces/{world.wid}/tasks", json={"agentId": "devbox", **body}
    )


def task(world: World, task_id: str) -> dict:
    """The task as the phone reads it."""
    return world.phone.get(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}").json()["task"]


def finished(world: World, task_id: str, timeout: float = 30) -> dict:
    """Wait until the task is terminal."""
    return wait_until(
        lambda: (t := task(world, task_id))["status"] in TERMINAL and t,
        timeout=timeout,
        what=f"task {task_id} to finish",
    )


def run(world: World, timeout: float = 30, **body: object) -> dict:
    """Submit and wait for the end."""
    res = submit(world, **body)
    assert res.status_code == 201, res.text
    return finished(world, res.json()["task"]["id"], timeout)
