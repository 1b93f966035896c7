"""`codexrelay demo` end to end: one process starts a relay and a paired agent, serves real
tasks over HTTP, and leaves nothing running once it gets SIGTERM or SIGINT."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conversations import decide, idle, pending_approval, read
from tests.demos import (
    LAN_HOST,
    RUNNING,
    Demo,
    alive,
    descendants,
    env_without_codex,
    processes_mentioning,
    terminal_qr,
    through_proxy,
)
from tests.helpers import PYTHON, wait_until
from tests.realcodex import CodexUnavailableError, install_codex

TERMINAL = {"completed", "failed", "cancelled", "rejected", "interrupted"}


@pytest.fixture(autouse=True)
def _stop_demos() -> Iterator[None]:
    """A failed test still stops the demo it started."""
    yield
    while RUNNING:
        demo = RUNNING.pop()
        if demo.proc.poll() is None or (demo.proc.stdout and not demo.proc.stdout.closed):
            demo.stop()


@pytest.fixture
def demo_dir(tmp_path: Path, _stop_demos: None) -> Iterator[Path]:
    """A directory for `--dir`; anything still running from it fails the test."""
    directory = tmp_path / "demo"
    yield directory
    leftovers = processes_mentioning(str(directory))
    assert not leftovers, f"processes left running: {leftovers}"


def phone(url: str) -> httpx.Client:
    """A phone-like client for the demo's relay (same Origin as its public origin)."""
    origin = url.rstrip("/")
    return httpx.Client(
        base_url=origin.replace("localhost", "127.0.0.1"), headers={"Origin": origin}, timeout=10
    )


def run_task(client: httpx.Client, wid: str, **body: object) -> dict:
    """Submit a task to the demo agent and wait for its end."""
    res = client.post(f"/api/v1/workspaces/{wid}/tasks", json={"agentId": "demo", **body})
    assert res.status_code == 201, res.text
    task_id = res.json()["task"]["id"]
    return wait_until(
        lambda: (
            (t := client.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()["task"])["status"]
            in TERMINAL
            and t
        ),
        timeout=60,
        what=f"task {task_id}",
    )


def test_demo_pairs_an_agent_serves_tasks_and_stops_everything(tmp_path, demo_dir):
    """One command: relay + agent paired through the real flow (R06); actions and logs run;
    Codex without a CLI fails with the install hint; SIGTERM stops every child (API.md)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    taken = busy.getsockname()[1]
    demo = Demo.start(tmp_path, "--dir", str(demo_dir), "--port", str(taken))
    try:
        url = demo.value("URL: ")
        token = demo.value("Recovery token: ")
    finally:
        busy.close()
    assert url.startswith("http://localhost:")
    assert url.endswith("/")
    assert int(url.rstrip("/").rsplit(":", 1)[1]) != taken, "a taken port must be skipped"
    assert token.startswith("crb_")
    children = descendants(demo.proc.pid)
    assert len(children) >= 2, demo.output()
    with phone(url) as client:
        assert client.post("/api/v1/auth/bootstrap", json={"token": token}).status_code == 200
        wid = client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
        agents = client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
        agent = next(a for a in agents if a["agentId"] == "demo")
        assert agent["online"] is True
        assert {a["id"] for a in agent["actions"]} == {"git-status", "git-log", "run-tests"}
        assert [s["id"] for s in agent["logSources"]] == ["app-log"]
        assert agent["features"]["codexExecWrite"] is False

        status = run_task(client, wid, type="run_action", actionId="git-status")
        assert status["status"] == "completed", status
        assert "NOTES.md" in status["outputTail"]
        tests = run_task(client, wid, type="run_action", actionId="run-tests")
        assert tests["status"] == "completed", tests
        assert tests["exitCode"] == 0
        assert "Ran 3 tests" in tests["outputTail"]
        log = run_task(client, wid, type="read_log", logSourceId="app-log")
        assert log["status"] == "completed", log
        assert "payment webhook delivered" in log["outputTail"]
        assert "s3cret-demo-pw" not in log["outputTail"]  # B3: redacted on the agent
        codex = run_task(client, wid, type="codex_exec", prompt="What does stats.py do?")
        assert codex["status"] == "failed", codex
        assert "npm install -g @openai/codex" in (codex["error"] or "")

    # The sample project holds the project alone: the agent's token and state live beside it.
    status = subprocess.run(
        ["git", "status", "--porcelain"],
        cwd=demo_dir / "workspace",
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert status.stdout == "?? NOTES.md\n"
    assert list(demo_dir.glob("agent/state/agent-token.json"))
    assert not list((demo_dir / "workspace").rglob("*token*"))
    assert demo.stop(signal.SIGTERM) == 0
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=5, what="children to go")
    assert (demo_dir / "workspace" / "stats.py").is_file(), "--dir is kept"


def test_demo_ctrl_c_removes_its_temporary_directory(tmp_path):
    """SIGINT stops relay and agent and removes the temporary directory the demo made."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    demo = Demo.start(tmp_path, "--port", "0", env={**env_without_codex(), "TMPDIR": str(temp)})
    demo_home = Path(demo.value("Demo directory: "))
    demo.value("Recovery token: ")
    assert demo_home.parent == temp.resolve()
    children = descendants(demo.proc.pid)
    assert demo.stop(signal.SIGINT) == 0
    assert not demo_home.exists()
    assert not any(alive(pid) for pid in children)
    assert not processes_mentioning(str(demo_home))


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    """--dir never clobbers a non-empty directory that is not an earlier demo's."""
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    res = subprocess.run(
        [PYTHON, "-m", "codexrelay", "demo", "--dir", str(precious)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 1
    assert "not made by `codexrelay demo`" in res.stderr
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]


# ---- the demo on a phone on the same network (--lan) ----------------------------------------


@pytest.mark.skipif(shutil.which("caddy") is None, reason="caddy missing: deploy/ensure-caddy.sh")
def test_demo_lan_serves_the_app_over_https_through_caddy(tmp_path, demo_dir):
    """--lan: Caddy serves the app on a random https port for the LAN name with its local
    CA; the printed URL works with that CA (and not without it), its QR code decodes to it,
    the session (a Secure cookie) and the paired agent work through the proxy, and the CA
    link serves the root certificate and nothing else. Ctrl-C stops Caddy too."""
    state = tmp_path / "state-home"
    env = {**env_without_codex(), "XDG_STATE_HOME": str(state)}
    args = ["--dir", str(demo_dir), "--port", "0", "--lan", "--lan-host", LAN_HOST]
    demo = Demo.start(tmp_path, *args, "--https-port", "0", env=env)
    url = demo.value("URL: ")
    token = demo.value("Recovery token: ")
    root = Path(demo.value("CA certificate: "))
    assert re.fullmatch(rf"https://{re.escape(LAN_HOST)}:\d+/", url), url
    assert root.is_relative_to(state / "codexrelay" / "caddy")
    wait_until(lambda: "Press Ctrl-C to stop." in demo.stderr_path.read_text(), what="the steps")
    wait_until(lambda: any(set(x) == {"▀"} for x in demo.lines), what="the QR code's last row")
    assert terminal_qr(demo.lines) == url
    children = descendants(demo.proc.pid)

    trusted = ssl.create_default_context(cafile=str(root))
    with httpx.Client(verify=trusted, timeout=10) as client:
        page = through_proxy(client, "GET", url, "/")
        assert page.status_code == 200
        assert "<title>codexrelay</title>" in page.text
        assert page.headers["strict-transport-security"]
        signed_in = through_proxy(client, "POST", url, "/api/v1/auth/bootstrap",
                                  json={"token": token})  # fmt: skip
        assert signed_in.status_code == 200, signed_in.text
        assert "secure" in signed_in.headers["set-cookie"].lower()
        me = through_proxy(client, "GET", url, "/api/v1/me").json()
        wid = me["memberships"][0]["workspaceId"]
        agents = through_proxy(client, "GET", url, f"/api/v1/workspaces/{wid}/agents").json()
        assert [a["agentId"] for a in agents["agents"] if a["online"]] == ["demo"]
    with httpx.Client(timeout=10) as untrusting, pytest.raises(httpx.ConnectError):
        through_proxy(untrusting, "GET", url, "/")

    stderr = demo.stderr_path.read_text()
    ca_url = re.search(r"http://\S+/codexrelay-demo-ca\.crt", stderr)
    assert ca_url, stderr
    served = httpx.get(ca_url.group(0), timeout=10)
    assert served.status_code == 200
    assert served.content == root.read_bytes()
    assert served.headers["content-type"] == "application/x-x509-ca-cert"
    base = ca_url.group(0).rsplit("/", 1)[0]
    for other in ("/root.key", "/root.crt", "/", "/codexrelay-demo-ca.crt/../root.key"):
        assert httpx.get(base + other, timeout=10).status_code == 404, other
    assert "iPhone:" in stderr
    assert "Android:" in stderr

    assert demo.stop(signal.SIGINT) == 0
    wait_until(lambda: not any(alive(pid) for pid in children), timeout=10, what="Caddy to stop")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lan", "--lan-host", "192.168.1.20"], "passkeys need a name, not an IP address"),
        (["--lan", "--tls-cert", __file__], "--tls-cert and --tls-key go together"),
        (["--lan-host", "box.local"], "need --lan"),
    ],
)
def test_demo_lan_refuses_what_cannot_work(tmp_path, args, message):
    """An IP address (no passkeys on it), half a certificate, or LAN options without --lan
    are refused before anything starts."""
    res = subprocess.run(
        [PYTHON, "-m", "codexrelay", "demo", "--dir", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert res.returncode == 1, res.stderr
    assert message in res.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.realcodex
@pytest.mark.timeout(240)
def test_demo_conversation_on_the_offline_demo_model(tmp_path, demo_dir):
    """Without a Codex login, the demo runs the real Codex CLI against the labelled offline
    demo model: the phone sees it say so, read a file, ask to run the tests (accepted: they
    run) and propose a patch (accepted: mode.py is written, inside the sample project)."""
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    home = tmp_path / "home"  # no ~/.codex login here
    home.mkdir()
    env = {**env_without_codex(), "HOME": str(home), "TMPDIR": str(tmp_path)}
    env["PATH"] = f"{launcher.parent}{os.pathsep}{env['PATH']}"
    demo = Demo.start(tmp_path, "--dir", str(demo_dir), "--port", "0", env=env)
    url, token = demo.value("URL: "), demo.value("Recovery token: ")
    assert "OFFLINE DEMO MODEL" in demo.output()
    assert "Write mode: allowed on the relay and the agent" in demo.output()
    workspace = demo_dir / "workspace"
    try:
        with phone(url) as client:
            assert client.post("/api/v1/auth/bootstrap", json={"token": token}).status_code == 200
            wid = client.get("/api/v1/workspaces").json()["workspaces"][0]["id"]
            agents = client.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
            assert agents[0]["features"]["conversations"] is True
            res = client.post(f"/api/v1/workspaces/{wid}/threads",
                              json={"agentId": "demo", "prompt": "Show me around"})  # fmt: skip
            assert res.status_code == 201, res.text
            tid = res.json()["thread"]["id"]
            for kind in ("command", "fileChange"):
                approval = pending_approval(client, wid, tid, timeout=90)
                assert approval["kind"] == kind
                assert decide(client, wid, tid, approval["id"], "accept").status_code == 200
            idle(client, wid, tid, timeout=90)
            items = read(client, wid, tid)["items"]
    finally:
        demo.stop(signal.SIGTERM)
    texts = " ".join(i.get("text") or "" for i in items if i["type"] == "agentMessage")
    assert "Offline demo model" in texts
    outputs = " ".join(i.get("output") or "" for i in items if i["type"] == "commandExecution")
    assert "# sample-project" in outputs  # the file it read
    assert "Ran 3 tests" in outputs  # the command it asked for
    assert "def mode(" in (workspace / "mode.py").read_text()
