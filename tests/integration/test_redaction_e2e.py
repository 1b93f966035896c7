"""Secrets printed on the development server never reach the relay (B3).

Every secret is built at run time from random pieces, planted in action output (streamed in
pieces, a private key over several lines), a log file, a Codex run and a Codex session
preview; the relay's answers must hold none of them, and say how many were redacted.
"""

from __future__ import annotations

import json
import secrets
import string
import sys

import pytest

from tests.agents import default_workspace, pair_agent
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.conftest import World, run


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def planted() -> dict[str, str]:
    upper = string.ascii_uppercase + string.digits
    alnum = string.ascii_letters + string.digits
    body = "\n".join(_random(alnum + "+/", 64) for _ in range(6))
    return {
        "aws": "AKIA" + _random(upper, 16),
        "github": "ghp_" + _random(alnum, 36),
        "pem": f"-----BEGIN {'PRIVATE'} KEY-----\n{body}\n-----END {'PRIVATE'} KEY-----",
        "url": f"postgres://app:{_random(alnum, 20)}@db.internal:5432/app",
    }


LEAK_SCRIPT = r"""
import os, sys, time
for name in ("AWS", "GITHUB", "PEM", "URL"):
    value = os.environ["PLANTED_" + name]
    half = len(value) // 2
    sys.stdout.write("value: " + value[:half]); sys.stdout.flush(); time.sleep(0.15)
    sys.stdout.write(value[half:] + "\n"); sys.stdout.flush()
"""


@pytest.fixture
def leaky_world(tmp_path):
    values = planted()
    setup = write_relay_config(tmp_path / "relay")
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    phone = relay.login()
    wid = default_workspace(phone)
    (tmp_path / "agent").mkdir()
    (tmp_path / "app.log").write_text(
        "".join(f"line {i}\n" for i in range(20))
        + f"connecting with {values['url']}\nAWS_SECRET={values['aws']}\n"
    )
    env = {f"PLANTED_{k.upper()}": v for k, v in values.items()}
    agent = pair_agent(
        relay,
        phone,
        wid,
        tmp_path / "agent",
        actions={
            "leak": {"label": "Leak", "argv": [sys.executable, "-c", LEAK_SCRIPT], "env": env}
        },
        logSources={"app": {"label": "App", "path": str(tmp_path / "app.log"), "maxLines": 50}},
    )
    world = World(relay, phone, wid, agent, tmp_path)
    yield world, values
    agent.stop()
    phone.close()
    relay.stop()


def _assert_clean(text: str, values: dict[str, str]) -> None:
    for name, value in values.items():
        for line in value.splitlines():
            if len(line) >= 16:
                assert line not in text, f"{name} reached the relay"


def test_action_output_streamed_in_pieces_is_redacted(leaky_world):
    """B3: secrets split across output chunks, and a multi-line key, are redacted."""
    world, values = leaky_world
    done = run(world, type="run_action", actionId="leak")
    assert done["status"] == "completed"
    _assert_clean(json.dumps(done), values)
    assert done["redactions"] >= 4
    assert "[REDACTED:" in done["outputTail"]
    streamed = "".join(p["text"] for p in done["progress"] if p["kind"] == "output")
    assert "[REDACTED:" in streamed
    _assert_clean(streamed, values)


def test_log_tail_is_redacted(leaky_world):
    """B3: a log read carrying credentials comes back redacted, line structure kept."""
    world, values = leaky_world
    done = run(world, type="read_log", logSourceId="app")
    _assert_clean(json.dumps(done), values)
    assert done["outputTail"].splitlines()[0] == "line 0"
    assert done["redactions"] >= 2


def test_codex_output_and_session_preview_are_redacted(leaky_world):
    """B3: Codex messages, commands and the session catalog's previews are redacted."""
    world, values = leaky_world
    prompt = (
        f"deploy with {values['github']}\n"
        f"FAKE: command echo {values['aws']}\n"
        f"FAKE: message the key is {values['github']}"
    )
    done = run(world, type="codex_exec", prompt=prompt)
    assert done["status"] == "completed"
    body = json.dumps({k: v for k, v in done.items() if k != "prompt"})
    _assert_clean(body, values)
    assert "[REDACTED:github_token]" in done["finalMessage"]
    url = f"/api/v1/workspaces/{world.wid}/agents/devbox/sessions"
    sessions = wait_until(
        lambda: world.phone.get(url).json()["sessions"], timeout=20, what="the session catalog"
    )
    _assert_clean(json.dumps(sessions), values)
    assert "[REDACTED:" in sessions[0]["title"]
