"""Pairing end to end with a real relay and real agent processes (R06, R07, R16, I3, I5)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time

import httpx
import pytest

from tests.agents import (
    AgentProcess,
    agent_info,
    create_code,
    default_workspace,
    pair_agent,
    pending_request,
    wait_online,
    write_agent_config,
)
from tests.helpers import PYTHON, RelayProcess, both_backends, wait_until, write_relay_config


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def phone(relay):
    client = relay.login()
    yield client
    client.close()


def agent_cli(config_path, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PYTHON, "-m", "codexrelay", "agent", *args, "--config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@both_backends
def test_pair_approve_stores_private_token_and_connects(relay, phone, tmp_path):
    """R06/R16: approval hands over a token kept 0600 in a 0700 state dir, never in config."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    try:
        state_dir = tmp_path / "a" / "state"
        token_file = state_dir / "agent-token.json"
        assert _mode(state_dir) == 0o700
        assert _mode(token_file) == 0o600
        token = json.loads(token_file.read_text())["token"]
        assert token.startswith("cra_")
        assert token not in (tmp_path / "a" / "agent.json").read_text()
        assert token not in relay.setup.stored_text()
        info = agent_info(phone, wid, "devbox")
        assert info["online"] is True
        assert info["workspaceRootName"] == "workspace"
        assert {a["id"] for a in info["actions"]} == {"hello", "env"}
        assert [s["id"] for s in info["logSources"]] == ["app"]
        assert info["features"]["codexExecWrite"] is False
        assert "argv" not in json.dumps(info)
        assert str(tmp_path) not in json.dumps(info)
        status = agent_cli(tmp_path / "a" / "agent.json", "status")
        assert "Paired: yes" in status.stdout
        assert "Connection: connected" in status.stdout
    finally:
        agent.stop()


def test_restart_agent_without_code(relay, phone, tmp_path):
    """A paired agent restarts with `agent start` and no code; `agent stop` stops it (I1)."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    agent.stop()
    wait_online(phone, wid, "devbox", online=False)
    again = AgentProcess(tmp_path / "a" / "agent.json", tmp_path / "a" / "again.log").start("start")
    try:
        wait_online(phone, wid, "devbox")
        stopped = agent_cli(tmp_path / "a" / "agent.json", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert again.wait_exit() == 0
        wait_online(phone, wid, "devbox", online=False)
    finally:
        again.stop()


def test_start_without_token_says_pair_first(relay, tmp_path):
    """`agent start` before pairing exits with a clear "pair first" message."""
    config = write_agent_config(tmp_path, relay.setup.base_url)
    res = agent_cli(config, "start")
    assert res.returncode == 2
    assert "pair first" in res.stderr


def test_revoke_disconnects_and_token_dies(relay, phone, tmp_path):
    """R07: revoking closes the socket at once, the agent exits, and the token never works."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    try:
        assert phone.delete(f"/api/v1/workspaces/{wid}/agents/devbox").status_code == 204
        assert agent.wait_exit(timeout=10) == 3
        assert "revoked" in agent.logs()
        info = agent_info(phone, wid, "devbox")
        assert info["online"] is False
        assert info["revokedAt"] is not None
        res = agent_cli(tmp_path / "a" / "agent.json", "start")
        assert res.returncode == 3
        assert "Pair again" in res.stderr
    finally:
        agent.stop()


def test_reject_ends_pairing(relay, phone, tmp_path):
    """A rejected request ends `agent pair` with a clear message and no token."""
    wid = default_workspace(phone)
    config = write_agent_config(tmp_path, relay.setup.base_url)
    agent = AgentProcess(config, tmp_path / "agent.log").start(
        "pair", "--pair-code", create_code(phone, wid)
    )
    request = pending_request(phone, wid, "devbox")
    assert (
        phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/reject").status_code
        == 200
    )
    assert agent.wait_exit() == 1
    assert "rejected" in agent.logs()
    assert not (tmp_path / "state" / "agent-token.json").exists()


def test_code_is_single_use(relay, phone, tmp_path):
    """A second claim of a code fails even while the first request waits."""
    wid = default_workspace(phone)
    code = create_code(phone, wid)
    body = {"code": code, "agentId": "one", "label": "one"}
    with httpx.Client(base_url=relay.setup.base_url) as agent_http:
        assert agent_http.post("/api/v1/agent/pair", json=body).status_code == 202
        again = agent_http.post("/api/v1/agent/pair", json={**body, "agentId": "two"})
        assert again.status_code == 400
        assert again.json()["error"] == "invalid-or-expired-code"
        wrong = agent_http.post("/api/v1/agent/pair", json={**body, "code": "0000-0000"})
        assert wrong.json() == again.json()


def test_pair_brute_force_hits_429(tmp_path):
    """R20: guessing codes quickly runs into the pair rate limit."""
    setup = write_relay_config(tmp_path / "relay", maxPairAttemptsPerMinute=5)
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    try:
        statuses = []
        with httpx.Client(base_url=setup.base_url) as client:
            for i in range(8):
                res = client.post(
                    "/api/v1/agent/pair",
                    json={"code": f"AAAA-{i:04d}", "agentId": "x", "label": "x"},
                )
                statuses.append(res.status_code)
            assert statuses[:5] == [400] * 5
            assert statuses[5:] == [429] * 3
            assert int(res.headers["retry-after"]) >= 1
    finally:
        relay.stop()


def test_rotating_token_secret_kills_agent_token(relay, phone, tmp_path):
    """I3: after `rotate-secrets --token-secret` and a restart, the agent is refused."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    try:
        relay.stop()
        res = subprocess.run(
            [
                PYTHON,
                "-m",
                "codexrelay",
                "relay",
                "rotate-secrets",
                "--token-secret",
                "--config",
                str(relay.setup.config_path),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        assert res.returncode == 0, res.stderr
        relay.start()
        assert agent.wait_exit(timeout=30) == 3
    finally:
        agent.stop()


def test_relay_restart_agent_reconnects(relay, phone, tmp_path):
    """Agents come back on their own after the relay restarts (backoff capped at 10 s)."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    try:
        relay.stop()
        relay.start()
        fresh = relay.login()
        wait_online(fresh, wid, "devbox", timeout=20)
        assert agent.running()
        fresh.close()
    finally:
        agent.stop()


def test_repairing_replaces_token_once_approved(relay, phone, tmp_path):
    """I5: pairing again flags the request and swaps the token only on approval."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    config = tmp_path / "a" / "agent.json"
    token_file = tmp_path / "a" / "state" / "agent-token.json"
    old_token = json.loads(token_file.read_text())["token"]
    agent.stop()
    repair = AgentProcess(config, tmp_path / "a" / "repair.log").start(
        "pair", "--pair-code", create_code(phone, wid)
    )
    try:
        request = pending_request(phone, wid, "devbox")
        assert request["replacesAgent"] is True
        assert json.loads(token_file.read_text())["token"] == old_token
        phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve")
        wait_until(
            lambda: json.loads(token_file.read_text())["token"] != old_token,
            what="the new token",
        )
        wait_online(phone, wid, "devbox")
        agents = phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
        assert [a["agentId"] for a in agents] == ["devbox"]
    finally:
        repair.stop()


def test_agent_renews_token_before_expiry(tmp_path):
    """Agent tokens never lapse silently: the agent renews over its socket before expiry."""
    setup = write_relay_config(tmp_path / "relay", agentTokenTtlSec=6)
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    client = relay.login()
    wid = default_workspace(client)
    agent = pair_agent(relay, client, wid, tmp_path / "a")
    token_file = tmp_path / "a" / "state" / "agent-token.json"
    first = json.loads(token_file.read_text())["token"]
    try:
        wait_until(
            lambda: json.loads(token_file.read_text())["token"] != first,
            timeout=10,
            what="a renewed token",
        )
        second = json.loads(token_file.read_text())["token"]
        wait_until(
            lambda: json.loads(token_file.read_text())["token"] != second,
            timeout=10,
            what="a second renewal",
        )
        assert agent.running()
        assert agent_info(client, wid, "devbox")["online"] is True
    finally:
        agent.stop()
        client.close()
        relay.stop()


@pytest.mark.slow
def test_dead_agent_detected_within_30_seconds(relay, phone, tmp_path):
    """A frozen agent (no pongs) is marked offline by the relay's pings within 30 s."""
    wid = default_workspace(phone)
    agent = pair_agent(relay, phone, wid, tmp_path / "a")
    try:
        os.kill(agent.proc.pid, signal.SIGSTOP)
        started = time.monotonic()
        wait_online(phone, wid, "devbox", online=False, timeout=30)
        print(f"dead agent noticed after {time.monotonic() - started:.1f}s")
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
        agent.stop()


def test_agent_pair_tells_a_malformed_code_apart_and_keeps_a_used_one_unrevealed(tmp_path):
    """R20 with a relay that allows 3 pair attempts a minute: three malformed codes are told
    apart by `agent pair` itself (none reaches the relay, so none counts), while a used code
    and a code never issued get the same message, hinting at a new code."""
    setup = write_relay_config(tmp_path / "relay", maxPairAttemptsPerMinute=3)
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    try:
        config = write_agent_config(tmp_path / "a", setup.base_url, agent_id="a")
        for bad in ("K7QX", "K7QX-M2PD-AAAA", "hello there"):
            res = agent_cli(config, "pair", "--pair-code", bad, "--no-start")
            assert res.returncode == 2, res.stderr
            assert "codes look like XXXX-XXXX" in res.stderr
        client = relay.login()
        try:
            code = create_code(client, default_workspace(client))
        finally:
            client.close()
        claim = {"code": code, "agentId": "other", "label": "other"}
        assert httpx.post(f"{setup.base_url}/api/v1/agent/pair", json=claim).status_code == 202
        used = agent_cli(config, "pair", "--pair-code", code.lower(), "--no-start")
        never = agent_cli(config, "pair", "--pair-code", "0000-0000", "--no-start")
        assert used.returncode == never.returncode == 1
        assert used.stderr == never.stderr
        assert "That pairing code is not valid." in used.stderr
        assert "create a new one on the phone" in used.stderr
        assert not (tmp_path / "a" / "state" / "agent-token.json").exists()
    finally:
        relay.stop()
