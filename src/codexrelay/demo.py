"""``codexrelay demo``: a relay, a paired agent and a sample workspace, in one command.

The demo runs the same relay and agent a person deploys, as child processes, and plays the
phone's part of pairing over real HTTP: it signs in with the recovery token it generated,
creates a pairing code, lets the agent claim it and approves the request (R06). Nothing is
shortcut, so what works in the demo works in production.

The children run in their own sessions, so a Ctrl-C in the terminal reaches the demo alone and
it stops them in order (agent, then relay). On Linux they also receive SIGTERM if the demo
itself dies, so even ``kill -9`` of the demo leaves no orphan behind.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import click
import httpx

from codexrelay.crypto import new_secret, sha256_hex
from codexrelay.democonv import DemoCodex, plan_codex
from codexrelay.demolan import (
    DEFAULT_HTTPS_PORT,
    LanOptions,
    LanPlan,
    announce_lan,
    lan_options,
    plan_lan,
    start_proxy,
)
from codexrelay.demopin import listen_for_codes, pin_command, pin_steps
from codexrelay.demoproc import Child, DemoError, poll
from codexrelay.relay.access.sessions import new_bootstrap_token
from codexrelay.relay.config import RelayConfig
from codexrelay.settings import dump_config, write_config_file

DEFAULT_PORT = 8787
AGENT_ID = "demo"
MARKER = ".codexrelay-demo"
AGENT_STOP_SEC = 15.0
RELAY_STOP_SEC = 10.0
PROXY_STOP_SEC = 10.0


@dataclass(frozen=True)
class Layout:
    """Where the demo keeps each thing inside its directory."""

    base: Path

    @property
    def relay_config(self) -> Path:
        return self.base / "relay" / "relay.json"

    @property
    def agent_config(self) -> Path:
        return self.base / "agent" / "agent.json"

    @property
    def workspace(self) -> Path:
        return self.base / "workspace"

    @property
    def logs(self) -> Path:
        return self.base / "logs"

    @property
    def app_log(self) -> Path:
        return self.logs / "app.log"


def pick_port(preferred: int) -> int:
    """``preferred`` if it is free on 127.0.0.1, else any free port (0 means any)."""
    for port in (preferred, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    msg = "no free port on 127.0.0.1"
    raise DemoError(msg)


def prepare_directory(directory: Path | None) -> tuple[Path, bool]:
    """The demo's directory and whether the demo created it (and so removes it at exit).

    A given directory must be empty or an earlier demo's: the demo replaces its relay and
    agent state on every run and must never clobber anything else.
    """
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="codexrelay-demo-")).resolve(), True
    base = directory.expanduser().resolve()
    if base.exists() and any(base.iterdir()) and not (base / MARKER).exists():
        msg = f"{base} is not empty and was not made by `codexrelay demo`; pick another --dir"
        raise DemoError(msg)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base, False


SAMPLE_FILES = {
    ".gitignore": "__pycache__/\n",
    "README.md": (
        "# sample-project\n\n"
        "A tiny Python project for the codexrelay demo. Ask Codex what `stats.py` does, or\n"
        "run the tests from your phone (Actions -> Run the tests).\n"
    ),
    "stats.py": (
        '"""Small statistics helpers."""\n\n\n'
        "def mean(values: list[float]) -> float:\n"
        '    """The arithmetic mean of a non-empty list."""\n'
        "    if not values:\n"
        '        raise ValueError("mean of an empty list")\n'
        "    return sum(values) / len(values)\n\n\n"
        "def median(values: list[float]) -> float:\n"
        '    """The middle value (the mean of the two middle values for an even count)."""\n'
        "    ordered = sorted(values)\n"
        "    middle = len(ordered) // 2\n"
        "    if len(ordered) % 2:\n"
        "        return ordered[middle]\n"
        "    return (ordered[middle - 1] + ordered[middle]) / 2\n"
    ),
    "test_stats.py": (
        "import unittest\n\n"
        "from stats import mean, median\n\n\n"
        "class StatsTest(unittest.TestCase):\n"
        "    def test_mean(self):\n"
        "        self.assertEqual(mean([1, 2, 3, 4]), 2.5)\n\n"
        "    def test_median_odd(self):\n"
        "        self.assertEqual(median([5, 1, 3]), 3)\n\n"
        "    def test_median_even(self):\n"
        "        self.assertEqual(median([4, 1, 3, 2]), 2.5)\n\n\n"
        'if __name__ == "__main__":\n'
        "    unittest.main()\n"
    ),
}

SAMPLE_LOG = [
    "2026-01-05T09:00:01Z INFO  app starting (version 1.4.2)",
    "2026-01-05T09:00:01Z INFO  connecting with DATABASE_URL=postgres://app:s3cret-demo-pw@db:5432/app",
    "2026-01-05T09:00:02Z INFO  listening on :8080",
    *(
        f"2026-01-05T09:{minute:02d}:17Z INFO  GET /api/orders 200 {12 + minute}ms"
        for minute in range(1, 21)
    ),
    "2026-01-05T09:21:40Z WARN  slow query on orders (812ms)",
    "2026-01-05T09:22:03Z ERROR payment webhook failed: timeout after 10s",
    "2026-01-05T09:22:05Z INFO  retrying payment webhook (attempt 2)",
    "2026-01-05T09:22:06Z INFO  payment webhook delivered",
]


def write_sample_workspace(workspace: Path) -> str | None:
    """A small git repository with passing tests and one untracked file; a warning or None."""
    workspace.mkdir(parents=True, exist_ok=True)
    if (workspace / ".git").exists():
        return None  # kept from an earlier run, with whatever was changed in it
    for name, text in SAMPLE_FILES.items():
        (workspace / name).write_text(text, encoding="utf-8")
    git = shutil.which("git")
    if git is None:
        return "git is not installed: the sample workspace is not a repository"
    identity = ["-c", "user.name=codexrelay demo", "-c", "user.email=demo@localhost"]
    for argv in (
        [git, "-c", "init.defaultBranch=main", "init", "-q"],
        [git, "add", "."],
        [git, *identity, "commit", "-q", "-m", "Sample project"],
    ):
        subprocess.run(argv, cwd=workspace, check=True, capture_output=True, timeout=30)
    # Something for `git status` to show.
    (workspace / "NOTES.md").write_text("Ideas: a mode() helper.\n", encoding="utf-8")
    return None


def write_relay_config(
    layout: Layout, port: int, lan: LanPlan | None = None, *, write: bool = False
) -> tuple[RelayConfig, str]:
    """A fresh relay config and its recovery token: for http://localhost:PORT, or on the
    LAN for the https origin Caddy serves (the proxy on loopback is its only trusted one);
    ``write`` allows write mode (the demo's sample project, with a Codex CLI)."""
    token = new_bootstrap_token()
    config = RelayConfig(
        listen_host="127.0.0.1",
        listen_port=port,
        public_origin=lan.origin if lan else f"http://localhost:{port}",
        data_dir="data",
        bootstrap_admin_token_hash=sha256_hex(token),
        token_secret=new_secret(),
        trusted_proxies=["127.0.0.1", "::1"] if lan else [],
        web={"app_name": "codexrelay demo"},
        features={"codex_exec_write": write},
    )
    write_config_file(layout.relay_config, dump_config(config), force=True)
    return config, token


def write_agent_config(layout: Layout, relay_url: str, codex: DemoCodex | None = None) -> None:
    """An agent config with the sample actions and log source (O6: each listed by id)."""
    data: dict[str, Any] = {
        "relayBaseUrl": relay_url,
        "agentId": AGENT_ID,
        "agentLabel": "Demo agent (this computer)",
        "stateDir": "state",
        "workspaceRoot": str(layout.workspace),
        "features": {
            "codexExec": True,
            "codexExecWrite": False,
            "runAction": True,
            "readLog": True,
        },
        "actions": {
            "git-status": {"label": "git status", "argv": ["git", "status", "--short", "--branch"]},
            "git-log": {"label": "git log", "argv": ["git", "log", "--oneline", "-n", "20"]},
            "run-tests": {
                "label": "Run the tests",
                "argv": [sys.executable, "-m", "unittest", "-v"],
                "timeoutSec": 120,
            },
        },
        "logSources": {"app-log": {"label": "App log", "path": str(layout.app_log)}},
    }
    extra = codex.agent_settings() if codex is not None else {}
    data["features"].update(extra.get("features", {}))
    if "codex" in extra:
        data["codex"] = extra["codex"]
    text = json.dumps(data, indent=2) + "\n"
    write_config_file(layout.agent_config, text, force=True)


def reset_state(layout: Layout) -> None:
    """Each run starts with fresh relay and agent state (new secrets make the old useless)."""
    for stale in (layout.relay_config.parent / "data", layout.agent_config.parent / "state"):
        shutil.rmtree(stale, ignore_errors=True)


def _ok(res: httpx.Response, what: str) -> dict[str, Any]:
    if res.status_code >= 400:
        msg = f"{what} failed: the relay answered {res.status_code} {res.text[:200]}"
        raise DemoError(msg)
    return dict(res.json()) if res.content else {}


def pair_as_phone(
    phone: httpx.Client, token: str, agent: Child, relay: Child, argv: list[str]
) -> None:
    """Sign in, create a code, start the agent's claim, approve it, wait until it is online."""
    signed_in = phone.post("/api/v1/auth/bootstrap", json={"token": token})
    _ok(signed_in, "signing in")
    # With an https origin the session cookie is Secure; on this loopback http hop it is
    # carried by hand.
    phone.cookies.clear()
    phone.headers["Cookie"] = signed_in.headers["set-cookie"].split(";", 1)[0]
    workspaces = _ok(phone.get("/api/v1/workspaces"), "listing workspaces")["workspaces"]
    wid = workspaces[0]["id"]
    created = _ok(
        phone.post(f"/api/v1/workspaces/{wid}/pairings", json={"note": "demo"}), "pairing"
    )
    agent.start([*argv, "--pair-code", created["code"]])
    children = [relay, agent]

    def pending() -> str | None:
        listed = _ok(phone.get(f"/api/v1/workspaces/{wid}/pair-requests"), "pair requests")
        return next((r["id"] for r in listed["pairRequests"] if r["status"] == "pending"), None)

    request_id = poll(pending, what="the agent's pair request", children=children)
    _ok(phone.post(f"/api/v1/workspaces/{wid}/pair-requests/{request_id}/approve"), "approving")

    def online() -> bool | None:
        agents = _ok(phone.get(f"/api/v1/workspaces/{wid}/agents"), "listing agents")["agents"]
        return True if any(a["agentId"] == AGENT_ID and a["online"] for a in agents) else None

    poll(online, what="the agent to come online", children=children)
    # The demo's own recovery session is not needed any more; the person signs in anew.
    phone.post("/api/v1/auth/logout")


def watch(children: list[Child], pin_config: Path | None = None) -> None:
    """Wait for Ctrl-C or SIGTERM; raise if a child stops on its own meanwhile. With
    ``pin_config``, a pairing code pasted on the terminal pins that agent meanwhile."""
    if pin_config is not None:
        listen_for_codes(pin_config)
    while True:
        for child in children:
            if child.exited():
                msg = f"the {child.name} stopped unexpectedly:\n{child.log_tail()}"
                raise DemoError(msg)
        time.sleep(0.5)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(directory: Path | None, port: int, lan_wanted: LanOptions | None = None) -> int:
    """Set everything up, print the URL and token, serve until a signal; the exit code."""
    signal.signal(signal.SIGTERM, _interrupt)
    lan = plan_lan(lan_wanted) if lan_wanted else None
    base, created = prepare_directory(directory)
    layout = Layout(base)
    relay = Child("relay", layout.logs / "relay.log")
    agent = Child("agent", layout.logs / "agent.log")
    proxy: Child | None = None
    codex = DemoCodex("missing")
    code = 0
    try:
        (base / MARKER).write_text("made by codexrelay demo\n", encoding="utf-8")
        layout.logs.mkdir(exist_ok=True)
        reset_state(layout)
        warning = write_sample_workspace(layout.workspace)
        if not layout.app_log.exists():
            layout.app_log.write_text("\n".join(SAMPLE_LOG) + "\n", encoding="utf-8")
        codex = plan_codex(base)
        write = codex.mode != "missing"
        config, token = write_relay_config(layout, pick_port(port), lan, write=write)
        local = f"http://127.0.0.1:{config.listen_port}"
        write_agent_config(layout, local, codex)
        cli = [sys.executable, "-m", "codexrelay"]
        relay.start([*cli, "relay", "start", "--config", str(layout.relay_config)])
        with httpx.Client(
            base_url=local, headers={"Origin": config.public_origin}, timeout=10
        ) as phone:
            poll(
                lambda: phone.get("/healthz").status_code == 200 or None,
                what="the relay",
                children=[relay],
            )
            agent_argv = [*cli, "agent", "pair", "--config", str(layout.agent_config)]
            pair_as_phone(phone, token, agent, relay, agent_argv)
        if lan:
            proxy = start_proxy(lan, base, config.listen_port, relay)
        announce(layout, config, token, warning, lan, codex)
        watch([relay, agent, *([proxy] if proxy else [])], pin_config=layout.agent_config)
    except KeyboardInterrupt:
        click.echo("Stopping the demo...", err=True)
    except (DemoError, OSError, subprocess.SubprocessError) as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if proxy:
            proxy.stop(PROXY_STOP_SEC)
        agent.stop(AGENT_STOP_SEC)
        relay.stop(RELAY_STOP_SEC)
        codex.stop()
        if created:
            shutil.rmtree(base, ignore_errors=True)
    click.echo("Demo stopped.", err=True)
    return code


def announce(
    layout: Layout,
    config: RelayConfig,
    token: str,
    warning: str | None,
    lan: LanPlan | None,
    conversations: DemoCodex | None = None,
) -> None:
    """What the person needs: where things are, the URL and the recovery token."""
    codex = shutil.which("codex")
    lines = [
        f"Demo directory: {layout.base}",
        f"Sample workspace: {layout.workspace} (actions: git status, git log, Run the tests;"
        " log: App log)",
        f"Codex CLI: {codex}"
        if codex
        else "Codex CLI: not found; Codex tasks will fail with an install hint "
        "(npm install -g @openai/codex) while actions and logs work",
        *([conversations.describe()] if conversations is not None else []),
        *(
            ["Write mode: allowed on the relay and the agent, for the sample project only"]
            if conversations is not None and conversations.mode != "missing"
            else []
        ),
        f"Logs: {layout.logs}",
    ]
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if lan:
        click.echo("\n".join(lines))
        announce_lan(lan, token)
        return
    lines += [
        f"URL: {config.public_origin}/",
        f"Recovery token: {token}",
        f"Pin the demo agent: {pin_command(layout.agent_config)}",
    ]
    click.echo("\n".join(lines))
    click.echo(
        "Open the URL, sign in with the recovery token and register a passkey. "
        f"{pin_steps()} Press Ctrl-C to stop.",
        err=True,
    )
    sys.stdout.flush()


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the demo's files here (default: a temporary directory removed at exit).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="Relay port; another free one is used if it is taken (0: any free port).",
)
@click.option("--lan", is_flag=True, help="Serve it to phones on this network over https (Caddy).")
@click.option("--lan-host", help="With --lan: the name phones use [default: HOSTNAME.local].")
@click.option(
    "--https-port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_HTTPS_PORT,
    show_default=True,
    help="With --lan: the https port; another free one is used if it is taken.",
)
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --lan: your certificate (PEM) for the name, instead of Caddy's local CA.",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="With --lan: the key of --tls-cert (PEM).",
)
def demo(
    directory: Path | None,
    port: int,
    lan: bool,
    lan_host: str | None,
    https_port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """Run a relay and a paired agent on a sample workspace until Ctrl-C."""
    try:
        options = lan_options(lan, lan_host, https_port, tls_cert, tls_key)
        code = run_demo(directory, port, options)
    except DemoError as exc:
        click.echo(f"error: {exc}", err=True)
        code = 1
    sys.exit(code)
