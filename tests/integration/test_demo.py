"""`codexrelay demo` end to end: one process starts a relay and a paired agent, serves real
tasks over HTTP, and leaves nothing running once it gets SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conversations import decide, idle, pending_approval, read
from tests.helpers import PYTHON, wait_until
from tests.realcodex import CodexUnavailableError, install_codex

TERMINAL = {"completed", "failed", "cancelled", "rejected", "interrupted"}


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the ppid follows the last ')'.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid``."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (ppid := _ppid(int(entry.name))) is not None:
            parents[int(entry.name)] = ppid
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that name ``text`` (a demo directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(cmdline)
    return found


def env_without_codex() -> dict[str, str]:
    """This environment with every PATH entry that holds a `codex` program removed."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    kept = [e for e in entries if e and not (Path(e) / "codex").exists()]
    return {**os.environ, "PATH": os.pathsep.join(kept), "PYTHONUNBUFFERED": "1"}


@dataclass
class Demo:
    """A running `codexrelay demo` with its stdout collected line by line."""

    proc: subprocess.Popen[str]
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None

    @classmethod
    def start(cls, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Demo:
        stderr_path = tmp_path / "demo.stderr"
        with stderr_path.open("w") as err:
            proc = subprocess.Popen(
                [PYTHON, "-m", "codexrelay", "demo", *args],
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env or env_without_codex(),
            )
        demo = cls(proc, stderr_path)
        demo.reader = threading.Thread(target=demo._read, daemon=True)
        demo.reader.start()
        RUNNING.append(demo)
        return demo

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def value(self, prefix: str, timeout: float = 60) -> str:
        """The rest of the first stdout line starting with ``prefix``."""

        def find() -> str | None:
            if self.proc.poll() is not None and not any(x.startswith(prefix) for x in self.lines):
                raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.output()}")
            return next((x.removeprefix(prefix) for x in self.lines if x.startswith(prefix)), None)

        try:
            return wait_until(find, timeout=timeout, what=f"a line {prefix!r}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def output(self) -> str:
        return "\n".join(self.lines) + "\n--- stderr ---\n" + self.stderr_path.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"demo did not stop:\n{self.output()}") from None
        finally:
            if self.reader is not None:
                self.reader.join(timeout=5)
            if self.proc.stdout is not None:
                self.proc.stdout.close()


RUNNING: list[Demo] = []


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
