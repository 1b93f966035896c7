"""``codexrelay agent ...``: write and check the agent config (pairing and serving join later).

The config file holds no secrets (the agent token lives in ``stateDir``, R16), and
``init`` writes the minimum: production enables only read-only Codex runs, and every
action or log source must be listed by hand (O6). Both the config and ``stateDir`` go to the
person's own directories by default, never into the workspace Codex reads.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

import click
from pydantic import ValidationError

from codexrelay.agent.config import AgentConfig, build_init_config, load_agent_config
from codexrelay.agent.statedir import config_exposure, workspace_exposure
from codexrelay.cliconfig import EXIT_CONFIG, fail, load_or_exit
from codexrelay.fileio import ensure_private_dir
from codexrelay.settings import (
    describe_validation_error,
    dump_config,
    write_config_file,
)
from codexrelay.userdirs import default_agent_config, default_agent_state

AGENT_CONFIG_ENV = "CODEXRELAY_AGENT_CONFIG"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
F = TypeVar("F", bound=Callable[..., Any])


def _default_config_path() -> Path:
    return Path(os.environ.get(AGENT_CONFIG_ENV) or default_agent_config())


def agent_config_option() -> Callable[[F], F]:
    """--config for agent commands ($CODEXRELAY_AGENT_CONFIG, else the user config dir)."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=_default_config_path,
        show_default=f"${AGENT_CONFIG_ENV} or ~/.config/codexrelay/agent.json",
        help="Agent config file.",
    )


def load_agent_or_exit(path: Path) -> AgentConfig:
    """Load the agent config or print every problem and exit 2."""
    return load_or_exit(load_agent_config, path)


def refuse_exposed_state(config: AgentConfig) -> None:
    """Exit 2 if the agent's token or state could be read from its workspace."""
    if problem := workspace_exposure(config):
        fail(problem, EXIT_CONFIG)


def default_agent_id() -> str:
    """This machine's host name, made into a valid agent id."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", socket.gethostname()).lstrip("_.-")[:64]
    return name or "agent"


def _production_url_problem(url: str | None) -> str | None:
    """Why ``url`` is not good enough for production, or None."""
    if not url:
        return "--mode production needs --relay https://your-relay-domain"
    parts = urlsplit(url)
    if parts.scheme != "https" and (parts.hostname or "") not in LOOPBACK_HOSTS:
        return f"{url} is not https; the agent token would cross the network in clear text"
    return None


@click.group()
def agent() -> None:
    """The private agent on the development server: runs only what its config allows."""


@agent.command("init")
@agent_config_option()
@click.option(
    "--mode",
    type=click.Choice(["test", "production"]),
    default="test",
    show_default=True,
    help="test: a sample `git status` action; production: read-only Codex runs only.",
)
@click.option("--relay", "relay_url", help="The relay's URL (required for production).")
@click.option("--agent-id", help="Agent id [default: this machine's host name].")
@click.option("--label", help="Name shown on the phone [default: the agent id].")
@click.option(
    "--workspace-root",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path(),
    show_default="the current directory",
    help="The only directory tree Codex and actions may work in.",
)
@click.option(
    "--state-dir",
    help="Where the agent token and task ledger go; outside the workspace "
    "[default: ~/.local/state/codexrelay/agent/AGENT_ID].",
)
@click.option(
    "--config-in-workspace",
    is_flag=True,
    help="Allow --config inside the workspace (it holds no secret, but Codex reads it).",
)
@click.option("--force", is_flag=True, help="Replace an existing config file.")
def agent_init(
    config_path: Path,
    mode: str,
    relay_url: str | None,
    agent_id: str | None,
    label: str | None,
    workspace_root: Path,
    state_dir: str | None,
    config_in_workspace: bool,
    force: bool,
) -> None:
    """Write an agent config (mode 0600, no secrets in it) outside the workspace."""
    if mode == "production" and (problem := _production_url_problem(relay_url)):
        fail(problem, 2)
    agent_id = agent_id or default_agent_id()
    root = workspace_root.expanduser().resolve()
    if not config_in_workspace and (problem := config_exposure(config_path, root)):
        fail(problem, 2)
    try:
        config = build_init_config(
            mode=cast("Literal['test', 'production']", mode),
            relay_base_url=relay_url or "http://localhost:8787",
            agent_id=agent_id,
            agent_label=label or agent_id,
            workspace_root=str(root),
            state_dir=state_dir or str(default_agent_state(agent_id)),
        )
    except ValidationError as exc:
        for line in describe_validation_error(AgentConfig, exc):
            click.echo(f"error: {line}", err=True)
        sys.exit(2)
    config.with_base_dir(config_path.expanduser().resolve().parent)
    refuse_exposed_state(config)
    try:
        write_config_file(config_path, dump_config(config), force=force)
    except FileExistsError as exc:
        fail(str(exc), 1)
    ensure_private_dir(config.state_path)
    click.echo(f"Wrote {config_path} (mode 0600).")
    click.echo(f"Agent {config.agent_id} for {config.relay_base_url}")
    click.echo(f"Workspace root: {config.workspace_root}")
    click.echo(f"State directory: {config.state_path} (mode 0700, outside the workspace)")
    pair = "codexrelay agent pair --pair-code CODE"
    if config_path.expanduser().resolve() != _default_config_path().expanduser().resolve():
        pair += f" --config {config_path}"
    click.echo(f"Next: create a code on the phone (Agents -> Pair an agent), then run `{pair}`.")


@agent.command("check-config")
@agent_config_option()
def agent_check_config(config_path: Path) -> None:
    """Validate the agent config, report every problem, and warn about missing programs."""
    config = load_agent_or_exit(config_path)
    if problem := workspace_exposure(config):
        fail(f"{config_path}: {problem}", EXIT_CONFIG)
    click.echo(f"{config_path}: ok (agent {config.agent_id}, relay {config.relay_base_url})")
    click.echo(f"Workspace root: {config.workspace_root}")
    click.echo(f"State directory: {config.state_path}")
    flags = config.features.model_dump(by_alias=True)
    click.echo(
        "Features: " + ", ".join(f"{name}={'on' if on else 'off'}" for name, on in flags.items())
    )
    click.echo("Actions: " + (", ".join(config.actions) or "none"))
    click.echo("Log sources: " + (", ".join(config.log_sources) or "none"))
    for warning in config_warnings(config):
        click.echo(f"warning: {warning}", err=True)


def config_warnings(config: AgentConfig) -> list[str]:
    """Problems that do not make the file invalid but will make tasks fail."""
    warnings = []
    program = config.codex.command[0]
    if config.features.codex_exec and shutil.which(program) is None:
        warnings.append(
            f"the Codex CLI ({program}) was not found; install it with "
            "`npm install -g @openai/codex` or set codex.command"
        )
    for action_id, action in config.actions.items():
        if shutil.which(action.argv[0]) is None and not Path(action.argv[0]).is_absolute():
            warnings.append(f"action {action_id}: {action.argv[0]} is not on PATH")
    for log_id, source in config.log_sources.items():
        if not Path(source.path).is_file():
            warnings.append(f"log source {log_id}: {source.path} is not a readable file yet")
    return warnings
