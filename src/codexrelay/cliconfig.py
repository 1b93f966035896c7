"""What every command line of the product shares: one-line errors, the --config option,
and loading a config that reports every bad key before exiting."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from codexrelay.relay.config import RelayConfig, load_relay_config
from codexrelay.settings import ConfigError, default_config_path

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_CONFIG = 2
RELAY_CONFIG_ENV = "CODEXRELAY_RELAY_CONFIG"


def fail(message: str, code: int = 1) -> NoReturn:
    """Print a one-line error to stderr and exit."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def config_option(env_var: str, filename: str, what: str) -> Callable[[F], F]:
    """``--config PATH`` defaulting to ``$env_var``, else ``./filename``."""
    return click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: default_config_path(env_var, filename),
        show_default=f"${env_var} or ./{filename}",
        help=f"{what} config file.",
    )


def load_or_exit(load: Callable[[Path], T], path: Path) -> T:
    """Load a config with ``load`` or print every problem, one line per key, and exit 2."""
    try:
        return load(path)
    except ConfigError as exc:
        for line in exc.lines:
            click.echo(f"error: {exc.path}: {line}", err=True)
        sys.exit(EXIT_CONFIG)


def relay_config_option() -> Callable[[F], F]:
    """--config for relay commands (env CODEXRELAY_RELAY_CONFIG, else ./relay.json)."""
    return config_option(RELAY_CONFIG_ENV, "relay.json", "Relay")


def load_relay_or_exit(path: Path) -> RelayConfig:
    """Load the relay config or print every problem and exit 2."""
    return load_or_exit(load_relay_config, path)
