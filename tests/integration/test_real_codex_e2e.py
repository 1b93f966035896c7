"""The real Codex CLI driven through the relay and a real agent (R12, R13, R14).

The pinned @openai/codex runs offline against the loopback model stand-in; the phone side
is plain HTTP against a real relay.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agents import default_workspace, pair_agent
from tests.fakes.model_server import ModelServer
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.conftest import World, run
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    codex_env,
    install_codex,
    run_codex_exec,
    write_codex_home,
)

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(300)]


@dataclass
class RealWorld:
    world: World
    server: ModelServer
    home: Path
    root: Path
    outside_session: str


@pytest.fixture
def real_world(tmp_path: Path) -> Iterator[RealWorld]:
    """A relay, an agent whose codex.command is the real CLI, and a session recorded outside
    the workspace root before the agent starts."""
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    (ROOT / ".cache").mkdir(exist_ok=True)
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    with ModelServer() as server:
        home = write_codex_home(tmp_path / "codex-home", server.base_url)
        env = codex_env(home, codex_tmp)
        outside = tmp_path / "agent" / "workspace2"
        outside.mkdir(parents=True)
        recorded = run_codex_exec(
            launcher, env=env, workspace=outside, prompt="Outside the root", timeout=90
        )
        assert recorded.returncode == 0, recorded.describe()
        setup = write_relay_config(tmp_path / "relay")
        relay = RelayProcess(setup, tmp_path / "relay.log").start()
        phone = relay.login()
        wid = default_workspace(phone)
        agent_env = {API_KEY_ENV: env[API_KEY_ENV], "TMPDIR": env["TMPDIR"], "NO_COLOR": "1"}
        agent = pair_agent(
            relay,
            phone,
            wid,
            tmp_path / "agent",
            process_env=agent_env,
            codex={"command": [str(launcher)], "home": str(home), "timeoutSec": 90},
        )
        world = World(relay, phone, wid, agent, tmp_path)
        try:
            yield RealWorld(
                world, server, home, tmp_path / "agent" / "workspace", str(recorded.thread_id)
            )
        finally:
            agent.stop()
            phone.close()
            relay.stop()
            shutil.rmtree(codex_tmp, ignore_errors=True)


def _sessions(world: World) -> list[dict]:
    url = f"/api/v1/workspaces/{world.wid}/agents/devbox/sessions"
    return world.phone.get(url).json()["sessions"]


def test_real_codex_through_relay_and_agent(real_world: RealWorld) -> None:
    """Read-only run, catalog entry, resume, and the workspace-root filter, end to end."""
    world = real_world.world
    prompt = "Explain the build\nsteps"
    first = run(world, timeout=120, type="codex_exec", prompt=prompt)
    assert first["status"] == "completed", first
    assert first["finalMessage"] == f"MOCK_REPLY: {prompt}"
    thread_id = first["codexSessionId"]
    assert thread_id
    assert real_world.server.requests[-1].thread_id == thread_id

    listed = wait_until(
        lambda: [s for s in _sessions(world) if s["sessionId"] == thread_id],
        timeout=30,
        what="the new session in the catalog",
    )
    assert listed[0]["cwd"] == str(real_world.root.resolve())
    assert listed[0]["title"] == "Explain the build steps"
    assert real_world.outside_session not in {s["sessionId"] for s in _sessions(world)}

    resumed = run(
        world, timeout=120, type="codex_exec", prompt="And the tests?", resumeSessionId=thread_id
    )
    assert resumed["status"] == "completed", resumed
    assert resumed["codexSessionId"] == thread_id
    assert resumed["finalMessage"] == "MOCK_REPLY: And the tests?"
    files = [p for p in (real_world.home / "sessions").rglob("*.jsonl") if thread_id in p.name]
    assert len(files) == 1

    refused = run(world, type="codex_exec", prompt="x", resumeSessionId=real_world.outside_session)
    assert refused["status"] == "rejected"
    assert refused["reason"] == "unknown-session"
