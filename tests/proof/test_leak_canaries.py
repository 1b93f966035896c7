"""Leak canaries: task texts, session previews and credentials never reach the relay's disk,
its logs or its environment (R10, R12, R01, R02, R06).

One real relay at ``logLevel: debug`` and one real agent run every task type (Codex through
the fake CLI, with a write-mode diff; an action; a log read) and every main flow (recovery
token, passkeys, invites, recovery codes, pairing), with a unique canary in the prompt, the
command output, the final message, the diff, the action output, the log line, and so in the
Codex session previews. The phone must see each canary (so they really went through the
relay); then the relay's whole data dir, everything it printed (stdout and stderr) and its
process environment are searched: zero hits. Tokens, cookies and codes must not appear in
the logs or the data dir either (only their hashes are stored).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.agents import (
    AgentProcess,
    create_code,
    default_workspace,
    pair_agent,
    pending_request,
    wait_online,
    write_agent_config,
)
from tests.conversations import decide, feed, idle, pending_approval, read, start, threads_url
from tests.fakes.model_server import ModelServer, scripted_reply
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.conftest import TERMINAL
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexUnavailableError,
    install_codex,
    write_codex_home,
)
from tests.softauthn import COOKIE, Phone

FRAGMENT = 10  # a canary leaks if any 10 characters of its random part show up


def canary(kind: str) -> str:
    """A unique marker that redaction leaves alone and nothing else could produce."""
    return f"cnry{kind}{uuid.uuid4().hex[:24]}"


def fragments(value: str) -> set[str]:
    """Every 10-character window of a canary's random tail: an excerpt leaks too."""
    tail = value[-24:]
    return {tail[i : i + FRAGMENT] for i in range(len(tail) - FRAGMENT + 1)}


@dataclass
class Secrets:
    """Every canary and credential of the run, by name."""

    canaries: dict[str, str] = field(default_factory=dict)
    credentials: dict[str, str] = field(default_factory=dict)

    def credential(self, name: str, value: str | None) -> str:
        assert value, f"no {name}"
        self.credentials[name] = value
        return value


def _git_workspace(workspace: Path) -> None:
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("before\n")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=workspace, check=True)


def _pair(
    relay: RelayProcess, owner: httpx.Client, wid: str, directory: Path, secrets: Secrets
) -> AgentProcess:
    """Pair the agent with the real CLI, keeping the pairing code and the token it got."""
    c = secrets.canaries
    log_file = directory / "app.log"
    log_file.write_text(f"line one\nerror {c['log']} happened\n")
    config = write_agent_config(
        directory,
        relay.setup.base_url,
        features={"codexExec": True, "codexExecWrite": True, "runAction": True, "readLog": True},
        actions={
            "say": {"label": "Say", "argv": [sys.executable, "-c", f"print('{c['action']}')"]}
        },
        logSources={"app": {"label": "App log", "path": str(log_file), "maxLines": 10}},
    )
    code = secrets.credential("pairing code", create_code(owner, wid))
    agent = AgentProcess(config, directory / "agent.log").start("pair", "--pair-code", code)
    request = pending_request(owner, wid, "devbox")
    assert owner.post(f"/api/v1/workspaces/{wid}/pair-requests/{request['id']}/approve").is_success
    wait_online(owner, wid, "devbox")
    token = (directory / "state" / "agent-token.json").read_text()
    secrets.credential("agent token", token.split('"token": "')[1].split('"')[0])
    return agent


def _people_flows(relay: RelayProcess, owner: Phone, wid: str, secrets: Secrets) -> None:
    """Passkeys, invites and recovery codes, each credential remembered."""
    secrets.credential("bootstrap session", owner.cookie)
    owner.enroll("Owner phone")
    assert owner.login().status_code == 200
    secrets.credential("owner passkey session", owner.cookie)
    res = owner.post(f"/api/v1/workspaces/{wid}/invites", json={"role": "member"})
    invite_code = secrets.credential("invite code", res.json()["code"])
    invitee = Phone(relay.client())
    assert invitee.post(
        "/api/v1/invites/accept", json={"code": invite_code, "name": "Ina"}
    ).is_success
    secrets.credential("invite session", invitee.cookie)
    invitee.enroll()
    user_id = invitee.get("/api/v1/me").json()["user"]["id"]
    res = owner.post(f"/api/v1/users/{user_id}/recovery-code", json={})
    recovery = secrets.credential("recovery code", res.json()["code"])
    lost = Phone(relay.client())
    assert lost.post("/api/v1/auth/recovery/redeem", json={"code": recovery}).is_success
    secrets.credential("recovery session", lost.cookie)
    invitee.client.close()
    lost.client.close()


def _task(owner: httpx.Client, wid: str, **body: object) -> dict:
    res = owner.post(f"/api/v1/workspaces/{wid}/tasks", json={"agentId": "devbox", **body})
    assert res.status_code == 201, res.text
    task_id = res.json()["task"]["id"]
    return wait_until(
        lambda: (
            (t := owner.get(f"/api/v1/workspaces/{wid}/tasks/{task_id}").json()["task"])["status"]
            in TERMINAL
            and t
        ),
        timeout=60,
        what=f"task {task_id}",
    )


def _every_task(owner: httpx.Client, wid: str, secrets: Secrets) -> str:
    """Run each task type; return everything the phone was shown."""
    c = secrets.canaries
    shown = []
    prompt = (
        f"Look around {c['prompt']}\nFAKE: command echo {c['output']}\nFAKE: message {c['message']}"
    )
    shown.append(str(_task(owner, wid, type="codex_exec", prompt=prompt)))
    write = f"FAKE: write notes.txt {c['diff']}\nFAKE: message edited"
    shown.append(str(_task(owner, wid, type="codex_exec", prompt=write, writeAccess=True)))
    shown.append(str(_task(owner, wid, type="run_action", actionId="say")))
    shown.append(str(_task(owner, wid, type="read_log", logSourceId="app")))

    def previews() -> str | None:
        listed = owner.get(f"/api/v1/workspaces/{wid}/agents/devbox/sessions").json()
        text = str(listed)
        return text if c["prompt"] in text and c["message"] in text else None

    shown.append(wait_until(previews, timeout=30, what="session previews on the phone"))
    return "\n".join(shown)


def _hits(haystacks: dict[str, bytes], needles: dict[str, set[str]]) -> list[str]:
    found = []
    for where, data in haystacks.items():
        for name, forms in needles.items():
            hit = next((form for form in forms if form.encode() in data), None)
            if hit is not None:
                found.append(f"{name} found in {where}: {hit!r}")
    return found


def _data_files(data_dir: Path) -> dict[str, bytes]:
    found = (p for p in data_dir.rglob("*") if p.is_file())
    return {str(p.relative_to(data_dir)): p.read_bytes() for p in found}


def test_no_canary_or_credential_leaves_relay_memory(tmp_path):
    """R10, R12: canaries of every task text and preview, and every credential, appear
    nowhere in the relay's data dir (the SQLite database, its WAL and shared memory, while
    running and after), its debug-level logs or its process environment."""
    secrets = Secrets(canaries={k: canary(k) for k in (
        "prompt", "output", "message", "diff", "action", "log"
    )})  # fmt: skip
    setup = write_relay_config(
        tmp_path / "relay",
        features={"codexExecWrite": True},
        logLevel="debug",
        storage={"backend": "sqlite"},
    )
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    agent = None
    phone = Phone(relay.client())
    owner = relay.client()
    try:
        phone.bootstrap(secrets.credential("recovery token", setup.token))
        owner.cookies.set(COOKIE, phone.cookie or "")
        wid = default_workspace(owner)
        _people_flows(relay, phone, wid, secrets)
        owner.cookies.set(COOKIE, phone.cookie or "")
        _git_workspace(tmp_path / "agent" / "workspace")
        agent = _pair(relay, owner, wid, tmp_path / "agent", secrets)
        shown = _every_task(owner, wid, secrets)
        missing = [name for name, value in secrets.canaries.items() if value not in shown]
        assert not missing, f"the phone never saw: {missing}"
        assert relay.proc is not None
        environ = Path(f"/proc/{relay.proc.pid}/environ").read_bytes()
        # While the relay runs, recent writes sit in the SQLite WAL (closing folds it into
        # the database and removes it): search it as it was.
        live = _data_files(setup.data_dir)
        assert "relay.sqlite3-wal" in live
    finally:
        if agent is not None:
            agent.stop()
        relay.stop()
        owner.close()
        phone.client.close()
    logs = relay.log_path.read_bytes()
    assert b"POST /api/v1/workspaces/" in logs
    files = _data_files(setup.data_dir)
    assert "relay.sqlite3" in files
    places = {"relay log": logs, "relay environment": environ}
    places.update({f"data dir {name}": data for name, data in files.items()})
    places.update({f"data dir (running) {name}": data for name, data in live.items()})
    canaries = {name: fragments(value) for name, value in secrets.canaries.items()}
    credentials = {
        name: {value, value.replace("-", "")} for name, value in secrets.credentials.items()
    }
    leaks = _hits(places, canaries) + _hits(places, credentials)
    print(  # the figures the proof reports
        f"searched {len(places)} places ({sum(map(len, places.values()))} bytes) for "
        f"{len(secrets.canaries)} canaries and {len(secrets.credentials)} credentials"
    )
    assert not leaks, "\n".join(leaks)


@pytest.mark.realcodex
@pytest.mark.timeout(300)
def test_no_conversation_canary_reaches_relay_disk_or_logs(tmp_path):
    """R10 for live conversations: canaries in a prompt, the streamed reply, a reasoning
    summary, a command and its output, and a patch's diff all reach the phone (thread
    read and event stream) and none reaches the relay's data dir, debug logs or
    environment; thread, turn and approval metadata does."""
    try:
        launcher = install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")
    c = {k: canary(k) for k in ("prompt", "reasoning", "output", "diff")}
    setup = write_relay_config(tmp_path / "relay", logLevel="debug")
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    codex_tmp = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    owner = relay.login()
    agent = None
    try:
        with ModelServer(responder=scripted_reply) as model:
            wid = default_workspace(owner)
            agent = pair_agent(
                relay, owner, wid, tmp_path / "agent",
                process_env={API_KEY_ENV: "mock-key", "TMPDIR": str(codex_tmp)},
                features={"codexExec": True, "conversations": True},
                codex={"command": [str(launcher)],
                       "home": str(write_codex_home(tmp_path / "codex-home", model.base_url))},
            )  # fmt: skip
            with feed(owner, wid) as events:
                shown = _converse(owner, wid, c)
                shown += json.dumps(events.frames)
            environ = Path(f"/proc/{relay.proc.pid}/environ").read_bytes()  # type: ignore[union-attr]
            live = _data_files(setup.data_dir)  # the SQLite WAL as it is while running
    finally:
        if agent is not None:
            agent.stop()
        relay.stop()
        owner.close()
        shutil.rmtree(codex_tmp, ignore_errors=True)
    missing = [name for name, value in c.items() if value not in shown]
    assert not missing, f"the phone never saw: {missing}"
    files = _data_files(setup.data_dir)
    stored = setup.stored_state()
    assert stored.threads
    assert any(a.kind == "fileChange" for a in stored.approvals.values())
    places = {"relay log": relay.log_path.read_bytes(), "relay environment": environ}
    places.update({f"data dir {name}": data for name, data in files.items()})
    places.update({f"data dir (running) {name}": data for name, data in live.items()})
    leaks = _hits(places, {name: fragments(value) for name, value in c.items()})
    assert not leaks, "\n".join(leaks)


def _converse(owner: httpx.Client, wid: str, c: dict[str, str]) -> str:
    """A thread whose every kind of content carries a canary; what the phone was shown."""
    first = f"Look at {c['prompt']}\nMOCK_REASON: {c['reasoning']}"
    tid = start(owner, wid, first)["thread"]["id"]
    idle(owner, wid, tid)
    for prompt in (f"MOCK_ESCALATE: echo {c['output']}", f"MOCK_PATCH: leak.txt {c['diff']}"):
        res = owner.post(threads_url(wid, tid, "turns"), json={"prompt": prompt})
        assert res.status_code == 201, res.text
        approval = pending_approval(owner, wid, tid)
        assert decide(owner, wid, tid, approval["id"], "accept").status_code == 200
        idle(owner, wid, tid)
    return json.dumps(read(owner, wid, tid))
