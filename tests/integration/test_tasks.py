"""Tasks end to end: a real relay, a real agent, the fake Codex CLI (R09, R10, R15, R18, B4)."""

from __future__ import annotations

import json
import subprocess
import time
import uuid

import httpx
import pytest

from tests.agents import AgentProcess, default_workspace, pair_agent, wait_online
from tests.helpers import RelayProcess, wait_until, write_relay_config
from tests.integration.conftest import World, finished, run, submit, task


def test_run_action_completes_with_output(world):
    """R15: a predefined action runs and its output and exit code come back."""
    done = run(world, type="run_action", actionId="hello")
    assert done["status"] == "completed"
    assert done["exitCode"] == 0
    assert done["outputTail"].strip() == "hello"
    assert done["detailsExpired"] is False
    assert done["startedAt"]
    assert done["finishedAt"]


def test_action_sees_minimal_environment(world):
    """Actions get PATH, HOME, LANG and their own env, never the agent's secrets."""
    done = run(world, type="run_action", actionId="env")
    names = {line.split("=", 1)[0] for line in done["outputTail"].splitlines() if "=" in line}
    assert names <= {"PATH", "HOME", "LANG", "PWD", "SHLVL", "_", "LC_CTYPE"}, names


def test_read_log_returns_last_lines(world):
    """A predefined log read returns the last maxLines of the file."""
    done = run(world, type="read_log", logSourceId="app")
    lines = done["outputTail"].splitlines()
    assert lines[-1] == "line 500"
    assert len(lines) == 50


def test_codex_exec_streams_progress_and_final_message(world):
    """A Codex task runs read-only, streams progress, and returns the final message."""
    prompt = "Summarise the repo\nFAKE: command ls -la\nFAKE: message All good here."
    done = run(world, type="codex_exec", prompt=prompt)
    assert done["status"] == "completed", done
    assert done["finalMessage"] == "All good here."
    assert uuid.UUID(done["codexSessionId"])
    assert done["prompt"] == prompt
    kinds = [p["kind"] for p in done["progress"]]
    assert "command" in kinds
    assert "message" in kinds
    assert done["writeAccess"] is False


def test_codex_failure_reported(world):
    """A failed Codex turn ends as failed with the CLI's error."""
    done = run(world, type="codex_exec", prompt="FAKE: fail the model is on fire")
    assert done["status"] == "failed"
    assert "fire" in (done["error"] or "")


def test_cancel_stops_running_task(world):
    """Cancel reaches the agent, which stops the process group."""
    res = submit(world, type="run_action", actionId="slow")
    task_id = res.json()["task"]["id"]
    wait_until(lambda: task(world, task_id)["status"] == "running", what="running")
    res = world.phone.post(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/cancel")
    assert res.status_code == 200
    assert res.json()["task"]["cancelRequested"] is True
    done = finished(world, task_id, timeout=20)
    assert done["status"] == "cancelled"
    again = world.phone.post(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/cancel")
    assert again.status_code == 409
    assert again.json()["error"] == "task-finished"


def test_action_timeout_fails(world):
    """An action past its timeoutSec is stopped and fails."""
    done = run(world, type="run_action", actionId="quick-timeout", timeout=20)
    assert done["status"] == "failed"
    assert "did not finish within 1s" in (done["error"] or "")


def test_concurrency_limit_queues_on_agent(world):
    """Two tasks run at once (default); a third waits on the agent until a slot frees."""
    ids = [submit(world, type="run_action", actionId="slow").json()["task"]["id"] for _ in range(3)]
    wait_until(
        lambda: sum(task(world, i)["status"] == "running" for i in ids) == 2, what="two running"
    )
    time.sleep(0.5)
    statuses = [task(world, i)["status"] for i in ids]
    assert statuses.count("running") == 2, statuses
    assert statuses.count("dispatched") == 1, statuses
    for task_id in ids:
        world.phone.post(f"/api/v1/workspaces/{world.wid}/tasks/{task_id}/cancel")
    for task_id in ids:
        assert finished(world, task_id)["status"] == "cancelled"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"type": "run_action", "actionId": "nope"}, 400, "unknown-action"),
        ({"type": "read_log", "logSourceId": "nope"}, 400, "unknown-log-source"),
        ({"type": "codex_exec", "prompt": "x", "cwd": "../outside"}, 400, "invalid-cwd"),
        ({"type": "codex_exec", "prompt": "x", "cwd": "/etc"}, 400, "invalid-cwd"),
        (
            {"type": "codex_exec", "prompt": "x", "resumeSessionId": "--help"},
            400,
            "invalid-request",
        ),
        ({"type": "codex_exec", "prompt": "x" * 70000}, 413, "payload-too-large"),
        ({"type": "codex_exec", "prompt": "x", "writeAccess": True}, 403, "write-mode-disabled"),
        ({"type": "run_action", "actionId": "hello", "prompt": "x"}, 422, "invalid-request"),
        ({"type": "shell", "command": "rm -rf /"}, 422, "invalid-request"),
    ],
)
def test_relay_refusals(world, body, status, code):
    """R09, R15, R17: the relay refuses bad tasks with API.md's codes; nothing is recorded."""
    before = world.phone.get(f"/api/v1/workspaces/{world.wid}/tasks").json()["tasks"]
    res = submit(world, **body)
    assert res.status_code == status, res.text
    assert res.json()["error"] == code
    after = world.phone.get(f"/api/v1/workspaces/{world.wid}/tasks").json()["tasks"]
    assert after == before


def test_offline_and_revoked_agents(world):
    """409 agent-offline for a paired but stopped agent; agent-not-available once revoked."""
    world.agent.stop()
    wait_online(world.phone, world.wid, "devbox", online=False)
    res = submit(world, type="run_action", actionId="hello")
    assert (res.status_code, res.json()["error"]) == (409, "agent-offline")
    world.phone.delete(f"/api/v1/workspaces/{world.wid}/agents/devbox")
    res = submit(world, type="run_action", actionId="hello")
    assert (res.status_code, res.json()["error"]) == (409, "agent-not-available")


def test_relay_restart_mid_task_interrupts(world):
    """A task in flight when the relay restarts becomes interrupted and stays listed."""
    task_id = submit(world, type="run_action", actionId="slow").json()["task"]["id"]
    wait_until(lambda: task(world, task_id)["status"] == "running", what="running")
    world.relay.stop()
    world.relay.start()
    world.phone.close()
    world.phone = world.relay.login()
    done = task(world, task_id)
    assert done["status"] == "interrupted"
    assert done["reason"] == "relay-restarted"
    assert done["detailsExpired"] is True
    wait_online(world.phone, world.wid, "devbox")


def test_codex_task_cut_off_by_a_relay_restart_can_be_continued(world):
    """R12: the Codex session is on the task as soon as Codex names it, so a task the relay
    restart interrupted can still be continued: resuming it runs in that same session."""
    task_id = submit(
        world, type="codex_exec", prompt="FAKE: message working on it\nFAKE: sleep 60"
    ).json()["task"]["id"]
    wait_until(lambda: task(world, task_id)["codexSessionId"], what="the Codex session id")
    session_id = task(world, task_id)["codexSessionId"]
    world.relay.stop()
    world.relay.start()
    world.phone.close()
    world.phone = world.relay.login()
    cut = task(world, task_id)
    assert (cut["status"], cut["codexSessionId"]) == ("interrupted", session_id)
    wait_online(world.phone, world.wid, "devbox")
    wait_until(
        lambda: (
            world.phone.get(f"/api/v1/workspaces/{world.wid}/agents/devbox/sessions")
            .json()
            .get("sessions")
        ),
        what="the session catalog",
    )
    done = run(world, type="codex_exec", prompt="FAKE: message went on", resumeSessionId=session_id)
    assert (done["status"], done["codexSessionId"]) == ("completed", session_id), done
    assert done["finalMessage"] == "went on"


def test_task_texts_never_reach_relay_disk_or_logs(world):
    """R10: prompt and output canaries appear nowhere in the relay's data dir or logs."""
    canary = f"canary-{uuid.uuid4().hex}"
    done = run(
        world,
        type="codex_exec",
        prompt=f"{canary} prompt\nFAKE: command echo {canary}\nFAKE: message {canary} done",
    )
    assert canary in done["finalMessage"]
    run(world, type="run_action", actionId="hello")
    world.relay.stop()
    for path in world.relay.setup.data_dir.rglob("*"):
        if path.is_file():
            assert canary not in path.read_text(errors="replace"), path
    assert canary not in world.relay.logs()
    world.relay.start()


def test_events_stream_task_and_progress(world):
    """Viewers get task and task-progress events over SSE, and can resume with Last-Event-ID."""
    url = f"{world.relay.setup.base_url}/api/v1/workspaces/{world.wid}/events"
    frames: list[dict] = []
    with (
        httpx.Client(cookies=world.phone.cookies, timeout=30) as client,
        client.stream("GET", url) as res,
    ):
        assert res.headers["content-type"].startswith("text/event-stream")
        task_id = submit(
            world, type="codex_exec", prompt="FAKE: command ls\nFAKE: message done"
        ).json()["task"]["id"]
        current: dict = {}
        for line in res.iter_lines():
            if line.startswith("id: "):
                current["id"] = line[4:]
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
            elif line == "" and current:
                frames.append(current)
                current = {}
                statuses = [f["data"]["task"]["status"] for f in frames if f["event"] == "task"]
                if "completed" in statuses:
                    break
    events = [f["event"] for f in frames]
    assert "task-progress" in events
    assert all(f["data"].get("task", {}).get("id", task_id) == task_id for f in frames)
    first_id = frames[0]["id"]
    with (
        httpx.Client(cookies=world.phone.cookies, timeout=10) as client,
        client.stream("GET", url, headers={"Last-Event-ID": first_id}) as res,
    ):
        replayed = []
        for line in res.iter_lines():
            if line.startswith("id: "):
                replayed.append(line[4:])
            if len(replayed) == len(frames) - 1:
                break
    assert replayed == [f["id"] for f in frames[1:]]


def test_agent_restart_interrupts_unknown_tasks(world):
    """An agent that comes back without a task it was running reports it gone: interrupted."""
    task_id = submit(world, type="run_action", actionId="slow").json()["task"]["id"]
    wait_until(lambda: task(world, task_id)["status"] == "running", what="running")
    world.agent.proc.kill()
    world.agent.wait_exit()
    again = AgentProcess(world.agent.config_path, world.dir / "agent2.log").start("start")
    world.agent = again
    done = finished(world, task_id, timeout=30)
    assert done["status"] == "interrupted"
    assert done["reason"] == "agent-restarted"


def test_write_mode_returns_capped_diff(tmp_path):
    """A4/R17/R18: with write mode allowed on both sides, an admin's task may write, and the
    phone gets the git diff of the change."""
    setup = write_relay_config(tmp_path / "relay", features={"codexExecWrite": True})
    relay = RelayProcess(setup, tmp_path / "relay.log").start()
    phone = relay.login()
    wid = default_workspace(phone)
    workspace = tmp_path / "agent" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "README.md").write_text("hello\n")
    for args in (
        ["init", "-q"],
        ["add", "."],
        ["-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "init"],
    ):
        subprocess.run(["git", *args], cwd=workspace, check=True)
    agent = pair_agent(
        relay, phone, wid, tmp_path / "agent", features={"codexExec": True, "codexExecWrite": True}
    )
    world = World(relay, phone, wid, agent, tmp_path)
    try:
        done = run(
            world,
            type="codex_exec",
            writeAccess=True,
            prompt="FAKE: write README.md goodbye\nFAKE: message edited",
        )
        assert done["status"] == "completed", done
        assert done["writeAccess"] is True
        assert "-hello" in done["diffText"]
        assert "+goodbye" in done["diffText"]
        assert done["diffTruncated"] is False
        assert (workspace / "README.md").read_text().startswith("goodbye")
        read_only = run(world, type="codex_exec", prompt="FAKE: write NEW.md nope")
        assert read_only["diffText"] is None
        assert not (workspace / "NEW.md").exists()
    finally:
        agent.stop()
        phone.close()
        relay.stop()
