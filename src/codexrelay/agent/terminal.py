"""``codexrelay agent terminal``: the Codex TUI attached to the running agent's app-server.

A session started here runs on the agent's ``codex app-server`` (``codex --remote
unix://...``), so it shows live on the phone and the phone can answer its approvals and send
it turns. The TUI gets the same environment and CODEX_HOME as the agent's other Codex runs,
and starts in the current directory, which must be inside workspaceRoot (a thread elsewhere
would never show on the phone, R13).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import click

from codexrelay.agent.commands import agent, agent_config_option, load_agent_or_exit
from codexrelay.agent.runners.appserver.supervisor import connect_path, socket_path
from codexrelay.agent.runners.codex import codex_environment
from codexrelay.cliconfig import fail


def terminal_argv(
    command: list[str], socket: Path, *, write: bool, extra: tuple[str, ...]
) -> list[str]:
    """The TUI's argv; it accepts only ``-a on-request|never`` (section 6.3 of the reference)."""
    sandbox = "workspace-write" if write else "read-only"
    return [*command, "--remote", f"unix://{socket}", "-a", "on-request", "-s", sandbox, *extra]


@agent.command("terminal", context_settings={"ignore_unknown_options": True})
@agent_config_option()
@click.option(
    "--write", is_flag=True, help="Let Codex write in the workspace (needs codexExecWrite)."
)
@click.argument("codex_args", nargs=-1, type=click.UNPROCESSED)
def agent_terminal(config_path: Path, write: bool, codex_args: tuple[str, ...]) -> None:
    """Run the Codex TUI on the agent's app-server, so the phone sees and answers it."""
    config = load_agent_or_exit(config_path)
    if not config.features.conversations:
        fail("conversations are off in this agent's config: set features.conversations to true")
    if write and not config.features.codex_exec_write:
        fail("write mode is off in this agent's config (features.codexExecWrite)")
    sock = socket_path(config)
    target = connect_path(sock)
    try:
        usable = stat.S_ISSOCK(target.stat().st_mode)
    except OSError:
        usable = False
    if not usable:
        fail(f"no Codex app-server at {sock}: start the agent first (`codexrelay agent start`)")
    here = Path.cwd().resolve()
    if not here.is_relative_to(config.root):
        fail(f"run this inside workspaceRoot ({config.root}); {here} is outside it")
    argv = terminal_argv(config.codex.command, target, write=write, extra=codex_args)
    try:
        os.execvpe(argv[0], argv, codex_environment(config))  # noqa: S606 - argv from config
    except OSError as exc:
        fail(f"cannot start {argv[0]}: {exc.strerror}")
