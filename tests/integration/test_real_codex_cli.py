"""The real Codex CLI (pinned in tools/codex) against the loopback model stand-in.

Proves what the agent relies on: ``codex exec --json`` events, the rollout file it records
and the session catalog built from it, resume appending to the same file, and the
workspaceRoot filter over sessions recorded elsewhere (R12, R13).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from codexrelay.agent.catalog import SessionCatalog
from tests.fakes.model_server import ModelServer
from tests.realcodex import (
    API_KEY_ENV,
    ROOT,
    CodexRun,
    CodexUnavailableError,
    codex_env,
    install_codex,
    run_codex_exec,
    write_codex_home,
)

pytestmark = [pytest.mark.realcodex, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def codex_launcher() -> Path:
    """The pinned CLI, installed once into .cache/codex and reused afterwards."""
    try:
        return install_codex()
    except CodexUnavailableError as exc:
        pytest.skip(f"cannot run the real Codex CLI: {exc}")


@dataclass
class Setup:
    """A CODEX_HOME pointed at a running stand-in, a workspace root, and a sibling outside."""

    launcher: Path
    server: ModelServer
    home: Path
    root: Path
    project: Path
    outside: Path
    env: dict[str, str]

    def run(self, prompt: str, *, cwd: Path | None = None, resume: str | None = None) -> CodexRun:
        run = run_codex_exec(
            self.launcher,
            env=self.env,
            workspace=cwd or self.project,
            prompt=prompt,
            resume=resume,
            timeout=90,
        )
        assert run.returncode == 0, run.describe()
        return run

    def rollouts(self) -> list[Path]:
        return sorted((self.home / "sessions").rglob("rollout-*.jsonl"))


@pytest.fixture
def setup(codex_launcher: Path, tmp_path: Path) -> Iterator[Setup]:
    """A fresh CODEX_HOME and workspace per test; TMPDIR outside /tmp as the CLI prefers."""
    root = tmp_path / "work" / "app"
    project = root / "project"
    outside = tmp_path / "work" / "app2"
    project.mkdir(parents=True)
    outside.mkdir(parents=True)
    (ROOT / ".cache").mkdir(exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix="codex-tmp-", dir=ROOT / ".cache"))
    try:
        with ModelServer() as server:
            home = write_codex_home(tmp_path / "codex-home", server.base_url)
            env = codex_env(home, tmpdir)
            yield Setup(codex_launcher, server, home, root, project, outside, env)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_real_codex_exec_streams_a_turn_from_the_model(setup: Setup) -> None:
    """exec --json starts a thread, answers from the stand-in and completes the turn."""
    prompt = "Summarize   the project\nin one line"
    run = setup.run(prompt)
    assert run.event_types[0] == "thread.started"
    assert run.event_types[-1] == "turn.completed"
    assert run.agent_messages == [f"MOCK_REPLY: {prompt}"]
    assert "WARNING: proceeding" not in run.stderr
    [request] = setup.server.requests
    assert request.thread_id == run.thread_id
    assert request.headers["authorization"] == f"Bearer {setup.env[API_KEY_ENV]}"
    assert request.last_user_prompt == prompt


def test_real_codex_session_appears_in_catalog(setup: Setup) -> None:
    """A session the real CLI recorded shows with its id, cwd, title and messages (R12)."""
    run = setup.run("Explain   the build\nsteps")
    catalog = SessionCatalog(codex_home=setup.home, workspace_root=setup.root)
    assert catalog.refresh() is True
    [summary] = catalog.sessions()
    assert summary.session_id == run.thread_id
    assert summary.cwd == str(setup.project)
    assert summary.title == "Explain the build steps"
    assert [(p.role, p.text) for p in summary.preview] == [
        ("user", "Explain the build steps"),
        ("assistant", "MOCK_REPLY: Explain the build steps"),
    ]
    assert summary.created_at is not None
    assert summary.updated_at is not None
    assert summary.updated_at >= summary.created_at
    assert catalog.has_session(str(run.thread_id))


def test_real_codex_resume_appends_to_the_same_session(setup: Setup) -> None:
    """exec resume <id> continues the same thread in the same file; the catalog follows."""
    first = setup.run("first question")
    catalog = SessionCatalog(codex_home=setup.home, workspace_root=setup.root)
    catalog.refresh()
    [path] = setup.rollouts()
    size_before = path.stat().st_size
    second = setup.run("second question", resume=first.thread_id)
    assert second.thread_id == first.thread_id
    assert second.agent_messages == ["MOCK_REPLY: second question"]
    assert setup.server.requests[-1].user_texts == ["first question", "second question"]
    assert setup.rollouts() == [path]
    assert path.stat().st_size > size_before
    assert catalog.refresh() is True
    [summary] = catalog.sessions()
    assert summary.title == "first question"
    assert [p.text for p in summary.preview][-2:] == [
        "second question",
        "MOCK_REPLY: second question",
    ]


def test_real_codex_session_outside_root_is_not_listed(setup: Setup) -> None:
    """A session recorded with -C outside workspaceRoot never shows or resumes (R13)."""
    inside = setup.run("inside the root")
    outside = setup.run("in the sibling directory", cwd=setup.outside)
    assert len(setup.rollouts()) == 2
    catalog = SessionCatalog(codex_home=setup.home, workspace_root=setup.root)
    catalog.refresh()
    assert catalog.session_ids() == {inside.thread_id}
    assert not catalog.has_session(str(outside.thread_id))
    wider = SessionCatalog(codex_home=setup.home, workspace_root=setup.root.parent)
    wider.refresh()
    assert wider.session_ids() == {inside.thread_id, outside.thread_id}
