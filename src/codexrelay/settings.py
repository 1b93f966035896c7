"""Shared pieces of the relay and agent config files: camelCase JSON, per-key errors, 0600 files.

Both configs are pydantic models that forbid unknown keys; a broken file yields one line per
bad key naming the key, what is wrong, and how to fix it, all reported together.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from codexrelay.fileio import write_private_file

M = TypeVar("M", bound=BaseModel)


class ConfigError(Exception):
    """A config file is missing, unreadable or invalid; ``lines`` holds one problem each."""

    def __init__(self, path: Path, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        super().__init__("\n".join(f"{path}: {line}" for line in lines))


class CamelModel(BaseModel):
    """Base for config and state records: camelCase on disk, snake_case in Python."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )


def _key_path(model: type[BaseModel], loc: tuple[int | str, ...]) -> tuple[str, str]:
    """The dotted camelCase key for a validation error location, and that key's help text."""
    parts: list[str] = []
    help_text = ""
    current: Any = model
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
            continue
        fields = getattr(current, "model_fields", None)
        field = None
        if fields:
            field = fields.get(item) or next((f for f in fields.values() if f.alias == item), None)
        parts.append(("." if parts else "") + (field.alias or item if field else item))
        if field is not None:
            help_text = field.description or help_text
            annotation = field.annotation
            current = annotation if isinstance(annotation, type) else None
        else:
            current = None
    return "".join(parts), help_text


def describe_validation_error(model: type[BaseModel], exc: ValidationError) -> list[str]:
    """Turn pydantic's errors into one readable line per bad key, never echoing secrets."""
    lines = []
    for err in exc.errors(include_input=False, include_url=False):
        key, help_text = _key_path(model, tuple(err["loc"]))
        message = err["msg"]
        if err["type"] == "extra_forbidden":
            message = "unknown key; remove it or check its spelling"
            help_text = ""
        elif err["type"] == "missing":
            message = "missing"
        line = f"key '{key}': {message}"
        if help_text:
            line += f" (expected: {help_text})"
        lines.append(line)
    return lines


def load_json_model(model: type[M], path: Path, what: str) -> M:
    """Read and validate a JSON config file, raising :class:`ConfigError` with every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f"create it with `codexrelay {what} init --config {path}`"
        raise ConfigError(path, [f"no such file; {hint}"]) from None
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        line = f"not valid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise ConfigError(path, [line]) from None
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the file must hold one JSON object"])
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(path, describe_validation_error(model, exc)) from None


def dump_config(config: BaseModel) -> str:
    """Serialize a config with camelCase keys and secrets revealed (the file is 0600)."""
    data = config.model_dump(mode="json", by_alias=True, context={"reveal": True})
    return json.dumps(data, indent=2) + "\n"


def write_config_file(path: Path, text: str, *, force: bool) -> None:
    """Write a config file 0600, refusing to replace an existing one unless ``force``."""
    if path.exists() and not force:
        msg = f"{path} already exists; pass --force to replace it"
        raise FileExistsError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_private_file(path, text.encode("utf-8"))


def default_config_path(env_var: str, filename: str) -> Path:
    """The config path from ``env_var``, else ``filename`` in the working directory."""
    return Path(os.environ.get(env_var) or filename)
