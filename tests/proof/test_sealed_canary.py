"""The canary capture (TRUST.md §10 item 10): in a protected workspace whose policy says
``content: sealed``, unique strings in prompts, command output, final messages, diffs,
action output, log lines and Codex session previews never appear in any byte the relay
receives or sends, nor on its disk, nor in its logs. Zero hits is the bar.

A real relay process (SQLite, debug logging) sits behind a capturing TCP proxy; the phones
and the real agent process talk only through it, over HTTP and the agent's WebSocket. The
proxy's record is read back as content (WebSocket frames unmasked and inflated), and a
control canary the relay is meant to see (the agent's label, a workspace name) and the
task ids must be found in it, both ways, so the capture and the disk search provably see
what passes. The phones, decrypting with their device keys, must see every canary.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import httpx

from codexrelay.agent.trust import TRUST_FILE
from codexrelay.e2e.envelope import parse_wire
from codexrelay.e2e.policy import default_policy
from codexrelay.e2e.sealed import read_catalog, read_task
from tests import sealkit
from tests.agents import AgentProcess, write_agent_config
from tests.fakes.capture_proxy import CaptureProxy
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.proof.test_hostile_relay import _pending
from tests.proof.test_leak_canaries import _data_files, _git_workspace, _hits, canary, fragments
from tests.softauthn import Phone, join_by_invite
from tests.trustkit import Book, TrustedPhone

AGENT = "build-01"
KINDS = ("prompt", "output", "message", "diff", "action", "log", "writeprompt")


def _pair(owner: TrustedPhone, book: Book, url: str, directory: Path, c: dict[str, str]) -> Any:
    """§4.2 through the proxy, with an action and a log source that print canaries."""
    (directory / "app.log").parent.mkdir(parents=True, exist_ok=True)
    (directory / "app.log").write_text(f"line one\nerror {c['log']} happened\n")
    _git_workspace(directory / "workspace")
    config = write_agent_config(
        directory,
        url,
        agent_id=AGENT,
        agentLabel=c["control"],
        features={"codexExec": True, "codexExecWrite": True, "runAction": True, "readLog": True},
        actions={
            "say": {"label": "Say", "argv": [sys.executable, "-c", f"print('{c['action']}')"]}
        },
        logSources={
            "app": {"label": "App log", "path": str(directory / "app.log"), "maxLines": 10}
        },
    )
    assert owner.sudo().status_code == 200
    pairing = owner.pairing_code(book.ws)
    agent = AgentProcess(config, directory / "agent.log").start(
        "pair", "--pair-code", pairing.shown
    )
    request = _pending(owner, book.ws, AGENT, agent)
    assert owner.sudo().status_code == 200
    assert owner.approve(book, request, pairing).status_code == 200
    wait_until((directory / "state" / TRUST_FILE).exists, timeout=30, what="the pin")
    return agent


def _online(owner: TrustedPhone, wid: str) -> bool:
    agents = owner.phone.get(f"/api/v1/workspaces/{wid}/agents").json()["agents"]
    return any(a["agentId"] == AGENT and a["online"] and a.get("trust") for a in agents)


def _run(owner: TrustedPhone, book: Book, kind: str, **fields: Any) -> tuple[str, list[bytes]]:
    stmt, body = owner.task(book, AGENT, kind, **fields)
    request, _ = sealkit.seal(owner, sealkit.verified_view(owner, book), stmt, body)
    res = sealkit.submit(owner, book.ws, request)
    assert res.status_code == 201, res.text
    items = wait_until(
        lambda: (
            (e := sealkit.envelopes(owner, book.ws, stmt["task"]))
            and parse_wire(e[-1])[1].kind == "task.done"
            and e
        ),
        timeout=60,
        what=f"the end of {kind} task {stmt['task']}",
    )
    return stmt["task"], items


def _every_task(owner: TrustedPhone, viewer: TrustedPhone, book: Book, c: dict[str, str]) -> Any:
    """Each task type, sealed; returns what the viewer's device decrypted, and the ids."""
    prompt = (
        f"Look around {c['prompt']}\nFAKE: command echo {c['output']}\nFAKE: message {c['message']}"
    )
    write = f"Edit {c['writeprompt']}\nFAKE: write notes.txt {c['diff']}\nFAKE: message edited"
    runs = [
        _run(owner, book, "codex_exec", prompt=prompt),
        _run(owner, book, "codex_exec", prompt=write, writeAccess=True),
        _run(owner, book, "run_action", actionId="say"),
        _run(owner, book, "read_log", logSourceId="app"),
    ]
    view = sealkit.verified_view(owner, book)
    shown = []
    for task_id, items in runs:
        task = read_task(
            items, viewer.kex_key, me=viewer.device_id, view=view, agent=AGENT, task=task_id
        )
        assert task.complete, task.dropped
        shown.append(json.dumps([task.prompt, task.progress, task.texts]))
    url = f"/api/v1/workspaces/{book.ws}/agents/{AGENT}/sealed-catalog"

    def previews() -> str | None:
        envelope = viewer.phone.get(url).json()["envelope"]
        if envelope is None:
            return None
        sessions = read_catalog(
            envelope.encode(), viewer.kex_key, me=viewer.device_id, view=view, agent=AGENT
        )
        text = json.dumps(sessions)
        return text if c["prompt"] in text and c["writeprompt"] in text else None

    shown.append(wait_until(previews, timeout=30, what="the sealed previews"))
    return "\n".join(shown), [task_id for task_id, _ in runs]


def test_no_canary_of_a_sealed_workspace_reaches_the_relay(tmp_path):
    """Zero hits of any canary in the relay's traffic both ways (HTTP and the agent's
    WebSocket, decoded), its data dir (SQLite, WAL, every file, live and after), its
    debug log; the controls and task ids are found, so the searches see what passes."""
    c = {k: canary(k) for k in (*KINDS, "control")}
    setup = write_relay_config(
        tmp_path / "relay",
        features={"codexExecWrite": True},
        logLevel="debug",
        storage={"backend": "sqlite"},
    )
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    proxy = CaptureProxy(setup.port).start()
    http = httpx.Client(base_url=proxy.url, headers={"Origin": setup.origin}, timeout=15)
    agent = None
    try:
        owner = TrustedPhone.enroll(Phone(http).bootstrap(setup.token), "localhost")
        made = owner.phone.post("/api/v1/workspaces", json={"name": c["control"]})
        assert made.status_code == 201, made.text
        wid = owner.phone.get("/api/v1/me").json()["memberships"][0]["workspaceId"]
        policy = default_policy().model_dump(by_alias=True) | {"content": "sealed"}
        book, _ = owner.genesis(wid, policy)
        viewer_phone = join_by_invite(owner.phone, wid, "viewer", "Vic")
        me = viewer_phone.get("/api/v1/me").json()["user"]
        viewer = TrustedPhone(viewer_phone, me["id"], me["name"], "localhost")
        owner.add_member(book, viewer, "viewer")
        agent = _pair(owner, book, proxy.url, tmp_path / "agent", c)
        wait_until(lambda: _online(owner, wid), timeout=30, what="the agent online")
        shown, task_ids = _every_task(owner, viewer, book, c)
        missing = [k for k in KINDS if c[k] not in shown]
        assert not missing, f"the reader never saw: {missing}"
        live = _data_files(setup.data_dir)
        assert "relay.sqlite3-wal" in live
    finally:
        if agent is not None:
            agent.stop()
        http.close()
        relay.stop()
        proxy.stop()
    captured = proxy.readable()
    places = {f"traffic {name}": data for name, data in captured.items()}
    places["relay log"] = relay.log_path.read_bytes()
    places.update({f"data dir {k}": v for k, v in _data_files(setup.data_dir).items()})
    places.update({f"data dir (running) {k}": v for k, v in live.items()})
    _controls(captured, places, c["control"], task_ids)
    leaks = _hits(places, {k: fragments(c[k]) for k in KINDS})
    print(  # the figures the proof reports
        f"searched {len(places)} places ({sum(map(len, places.values()))} bytes, "
        f"{len(proxy.connections)} connections) for {len(KINDS)} canaries"
    )
    assert not leaks, "\n".join(leaks)


def _controls(
    captured: dict[str, bytes], places: dict[str, bytes], control: str, task_ids: list[str]
) -> None:
    """What the relay is meant to see is found where it passed: the searches can hit."""

    def seen(prefix: str, needle: str) -> bool:
        return any(needle.encode() in v for k, v in captured.items() if k.startswith(prefix))

    assert seen("http-up", control), "the capture missed the phone's request body"
    assert seen("http-down", control), "the capture missed the relay's answers"
    assert any(control.encode() in v for k, v in places.items() if k.startswith("data dir"))
    for task_id in task_ids:
        assert seen("ws-down", task_id), "the capture missed what the relay sent the agent"
        assert seen("ws-up", task_id), "the capture missed what the agent sent the relay"
