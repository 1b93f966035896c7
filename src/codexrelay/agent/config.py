"""The agent's validated, frozen config: what this machine allows, listed explicitly.

Nothing is enabled by a wildcard (O6): only the action and log ids written here exist, an
action is an argv list (never a shell string, R15) and every working directory must stay
inside ``workspaceRoot`` after resolving symlinks. Secrets never live in this file; the
agent token is kept in ``stateDir`` (R16), which must lie outside ``workspaceRoot``: what is
in the workspace, Codex and actions can read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator

from codexrelay.agent.redaction import RedactionSettings
from codexrelay.protocol import ID_PATTERN
from codexrelay.settings import CamelModel, load_json_model
from codexrelay.userdirs import default_agent_state

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ItemId = Annotated[str, Field(pattern=ID_PATTERN)]
Label = Annotated[str, Field(min_length=1, max_length=120)]
NonEmpty = Annotated[str, Field(min_length=1, max_length=4096)]


def default_codex_home() -> str:
    """``$CODEX_HOME`` if set, else ``~/.codex`` (the Codex CLI's own default)."""
    return os.environ.get("CODEX_HOME") or str(Path("~/.codex").expanduser())


def resolve_inside(root: Path, relative: str, *, strict: bool = False) -> Path:
    """Resolve ``relative`` against ``root`` (symlinks too) or raise if it leaves ``root``.

    ``strict`` walks the path as the kernel would: every component must exist, so
    ``missing/../..`` is not quietly folded into ``.`` (raises ``OSError``).
    """
    if "\x00" in relative:
        msg = "must not contain NUL characters"
        raise ValueError(msg)
    if Path(relative).is_absolute():
        msg = f"{relative!r} must be relative to workspaceRoot"
        raise ValueError(msg)
    for walk in (False, True) if strict else (False,):
        # The lenient walk first, so a path that climbs out is named as outside even
        # when a component on the way is missing.
        resolved = (root / relative).resolve(strict=walk)
        if not resolved.is_relative_to(root):
            msg = f"{relative!r} resolves outside workspaceRoot {root}"
            raise ValueError(msg)
    return resolved


class AgentFeatureFlags(CamelModel):
    """Agent-side feature flags (R09); the relay enforces its own set too."""

    codex_exec: bool = Field(True, description="true to allow codex_exec tasks")
    codex_exec_write: bool = Field(
        False, description="true to allow write-mode Codex tasks (off by default, R17)"
    )
    run_action: bool = Field(True, description="true to allow the actions listed here")
    read_log: bool = Field(True, description="true to allow the log sources listed here")
    conversations: bool = Field(
        False,
        description="true to run live Codex conversations (codex app-server) for the phone; "
        "write-mode threads also need codexExecWrite",
    )


class ActionConfig(CamelModel):
    """One predefined action: a fixed argv run without a shell."""

    label: Label = Field(..., description="a short name shown on the phone")
    argv: list[NonEmpty] = Field(
        ..., min_length=1, description='a list of strings, e.g. ["git", "status"]'
    )
    cwd: str = Field(".", description="a directory relative to workspaceRoot")
    timeout_sec: int = Field(300, ge=1, le=86400, description="1 to 86400 seconds")
    env: dict[str, Annotated[str, Field(max_length=4096)]] = Field(
        default_factory=dict, description="extra environment entries, NAME: value"
    )

    @field_validator("argv", mode="before")
    @classmethod
    def _refuse_shell_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            msg = (
                'argv must be a list of strings such as ["git", "status"]; '
                "shell command strings are not accepted"
            )
            raise ValueError(msg)  # noqa: TRY004 - pydantic reports ValueError per key
        return value

    @field_validator("env")
    @classmethod
    def _check_env(cls, value: dict[str, str]) -> dict[str, str]:
        for name, item in value.items():
            if not ENV_NAME.match(name):
                msg = f"{name!r} is not an environment variable name"
                raise ValueError(msg)
            if "\x00" in item:
                msg = f"the value of {name} contains a NUL character"
                raise ValueError(msg)
        return value


class LogSourceConfig(CamelModel):
    """One predefined log file; only its last lines are ever read."""

    label: Label = Field(..., description="a short name shown on the phone")
    path: NonEmpty = Field(..., description="an absolute file path, e.g. /var/log/app.log")
    max_lines: int = Field(200, ge=1, le=100000, description="1 to 100000 lines")

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not Path(value).is_absolute() or "\x00" in value:
            msg = "must be an absolute path"
            raise ValueError(msg)
        return value


class CodexSettings(CamelModel):
    """How the Codex CLI is started."""

    command: list[NonEmpty] = Field(
        default_factory=lambda: ["codex"],
        min_length=1,
        description='the argv prefix that starts the CLI, e.g. ["codex"]',
    )
    home: str = Field(
        default_factory=default_codex_home,
        description="the Codex home directory (CODEX_HOME), an absolute path",
    )
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="a model name passed as -m, or null for the CLI default"
    )
    extra_args: list[NonEmpty] = Field(
        default_factory=list, description='extra `codex exec` options, e.g. ["-c", "k=v"]'
    )
    allow_write_on_resume: bool = Field(
        False, description="true to allow write mode when resuming a session (R14)"
    )
    timeout_sec: int = Field(
        1800, ge=1, le=86400, description="stop a Codex run after this many seconds"
    )

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: str) -> str:
        path = Path(value).expanduser()
        if not path.is_absolute():
            msg = "must be an absolute path"
            raise ValueError(msg)
        return str(path)


class ConversationSettings(CamelModel):
    """Live Codex conversations through one supervised ``codex app-server``."""

    approval_policy: Literal["untrusted", "on-request", "never"] = Field(
        "on-request",
        description="when Codex asks before acting: untrusted (every command), on-request "
        "(what leaves the sandbox, and every file change in a read-only thread) or never",
    )
    approval_timeout_sec: int = Field(
        600,
        ge=1,
        le=86400,
        description="an approval nobody answers within this many seconds (1 to 86400) is "
        "declined; Codex itself would wait forever",
    )
    accept_for_session: Literal["never", "readOnly", "always"] = Field(
        "readOnly",
        description="where 'accept for session' is offered: never, readOnly (read-only threads "
        "only) or always",
    )
    max_threads: int = Field(
        100, ge=1, le=1000, description="threads the agent follows at once, 1 to 1000"
    )


class AgentConfig(CamelModel):
    """Every key of the agent config file. Field descriptions double as fix hints."""

    model_config = CamelModel.model_config | {"frozen": True, "validate_assignment": False}

    relay_base_url: str = Field(..., description="the relay's URL, e.g. https://relay.example.org")
    agent_id: ItemId = Field(
        ..., description="letters, digits, _ . - (up to 64), starting with a letter or digit"
    )
    agent_label: Label = Field(..., description="a short name shown on the phone")
    state_dir: NonEmpty | None = Field(
        None,
        description="directory for the agent token and task ledger, outside workspaceRoot; "
        "null for ~/.local/state/codexrelay/agent/<agentId>; relative paths are next to the "
        "config file",
    )
    workspace_root: NonEmpty = Field(
        ..., description="an absolute path to an existing directory Codex may work in"
    )
    features: AgentFeatureFlags = Field(
        default_factory=AgentFeatureFlags, description="feature flags"
    )
    actions: dict[ItemId, ActionConfig] = Field(
        default_factory=dict,
        description="actions by id, each {label, argv: [program, args...], cwd, timeoutSec, env}",
    )
    log_sources: dict[ItemId, LogSourceConfig] = Field(
        default_factory=dict,
        description="log files by id, each {label, path: an absolute path, maxLines}",
    )
    codex: CodexSettings = Field(default_factory=CodexSettings, description="Codex CLI settings")
    conversations: ConversationSettings = Field(
        default_factory=ConversationSettings,
        description="live conversation settings (features.conversations turns them on)",
    )
    max_task_log_bytes: int = Field(
        65536, ge=1024, le=1 << 20, description="output tail cap, 1024 to 1048576 bytes"
    )
    max_diff_bytes: int = Field(
        262144, ge=1024, le=1 << 20, description="diff cap, 1024 to 1048576 bytes"
    )
    max_concurrent_tasks: int = Field(
        2, ge=1, le=32, description="tasks run at once, 1 to 32; more wait in a queue"
    )
    redaction: RedactionSettings = Field(
        default_factory=RedactionSettings,
        description="secret redaction of everything sent to the relay (on by default)",
    )
    task_key_retention_days: int = Field(
        7,
        ge=0,
        le=365,
        description="days a sealed task's key is kept to wrap it for readers who come later, "
        "0 to 365 (0: never kept)",
    )

    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)

    @field_validator("relay_base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            msg = "must be an http(s) URL such as https://relay.example.org"
            raise ValueError(msg)
        if parts.query or parts.fragment or parts.username or parts.password:
            msg = "must not carry a query, fragment or credentials"
            raise ValueError(msg)
        return value.strip().rstrip("/")

    @field_validator("workspace_root")
    @classmethod
    def _check_root(cls, value: str) -> str:
        path = Path(value).expanduser()
        if not path.is_absolute():
            msg = "must be an absolute path"
            raise ValueError(msg)
        if not path.is_dir():
            msg = f"{value} is not an existing directory"
            raise ValueError(msg)
        return str(path.resolve())

    @field_validator("actions")
    @classmethod
    def _check_action_dirs(
        cls, value: dict[str, ActionConfig], info: ValidationInfo
    ) -> dict[str, ActionConfig]:
        root = info.data.get("workspace_root")
        if root is None:  # workspaceRoot itself is wrong; that error is reported already
            return value
        for action_id, action in value.items():
            try:
                resolve_inside(Path(root), action.cwd)
            except ValueError as exc:
                msg = f"action {action_id!r}: cwd {exc}"
                raise ValueError(msg) from None
        return value

    @property
    def root(self) -> Path:
        """``workspaceRoot`` as a resolved path."""
        return Path(self.workspace_root)

    @property
    def state_path(self) -> Path:
        """``stateDir`` resolved against the config file's directory, or the per-user default."""
        if self.state_dir is None:
            return default_agent_state(self.agent_id)
        path = Path(self.state_dir).expanduser()
        return path if path.is_absolute() else (self._base_dir / path).resolve()

    @property
    def codex_home(self) -> Path:
        """The Codex home directory the CLI runs with."""
        return Path(self.codex.home)

    def with_base_dir(self, base: Path) -> AgentConfig:
        """Remember the config file's directory so a relative ``stateDir`` resolves."""
        self._base_dir = base
        return self


def build_init_config(
    *,
    mode: Literal["test", "production"],
    relay_base_url: str,
    agent_id: str,
    agent_label: str,
    workspace_root: str,
    state_dir: str | None = None,
) -> AgentConfig:
    """The config `agent init` writes: production is minimal (codex_exec read-only only)."""
    test = mode == "test"
    actions: dict[str, Any] = {}
    if test:
        actions["git-status"] = {"label": "git status", "argv": ["git", "status", "--short"]}
    return AgentConfig.model_validate(
        {
            "relay_base_url": relay_base_url,
            "agent_id": agent_id,
            "agent_label": agent_label,
            "state_dir": state_dir,
            "workspace_root": workspace_root,
            "features": {
                "codex_exec": True,
                "codex_exec_write": False,
                "run_action": test,
                "read_log": test,
            },
            "actions": actions,
        }
    )


def load_agent_config(path: Path) -> AgentConfig:
    """Load and validate the agent config file (raises ``ConfigError``)."""
    config = load_json_model(AgentConfig, path, "agent")
    return config.with_base_dir(path.resolve().parent)
