"""The docs cannot drift from the code: every config key, protocol message, close code,
requirement id, CLI command and API path the docs name is checked against the real thing."""

from __future__ import annotations

import json
import re
import shlex
import typing

import click
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from codexrelay import protocol
from codexrelay.agent.config import AgentConfig
from codexrelay.cli import main
from codexrelay.relay.config import RelayConfig
from tests.helpers import ROOT

DOCS = ROOT / "docs"
CONFIG_DOC = DOCS / "CONFIG.md"
OPERATOR_DOCS = ("SECURITY.md", "DEPLOYMENT.md", "OPERATIONS.md", "CONFIG.md", "PROTOCOL.md")
REQUIREMENT_IDS = [
    *(f"A{i}" for i in range(1, 5)),
    *(f"R{i:02d}" for i in range(1, 22)),
    *(f"O{i}" for i in range(1, 7)),
    *(f"I{i}" for i in range(1, 7)),
    *(f"B{i}" for i in range(1, 8)),
]
SCALARS = (bool, int, float, str, type(None), list, dict)
ENVIRONMENT_DEFAULT = object()
# Flags of sudo, install and friends whose value may be the user name `codexrelay`.
VALUE_FLAGS = frozenset({"-u", "-g", "-o", "--user", "--group", "--owner"})


def _nested_model(annotation: object) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, or as the values of a dict keyed by id)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if typing.get_origin(annotation) is dict:
        value = typing.get_args(annotation)[1]
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value, True
    return None, False


def config_keys(model: type[BaseModel], prefix: str = "") -> list[tuple[str, object]]:
    """(dotted camelCase key, default or PydanticUndefined) for every key, nested ones too;
    dict-of-model keys appear as ``actions.<id>.label``."""
    keys: list[tuple[str, object]] = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        default = field.get_default(call_default_factory=True)
        if field.default_factory is not None and isinstance(default, str):
            default = ENVIRONMENT_DEFAULT  # e.g. codex.home follows $CODEX_HOME
        keys.append((key, default))
        nested, by_id = _nested_model(field.annotation)
        if nested is not None:
            keys.extend(config_keys(nested, f"{key}.<id>." if by_id else f"{key}."))
    return keys


def table_rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell's code span."""
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)\|\s*$", line)
        if match:
            rows[match.group(1)] = [cell.strip() for cell in match.group(2).split("|")]
    return rows


def section(text: str, heading: str) -> str:
    """The text under a ``## heading`` up to the next ``## ``."""
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_config_doc_has_every_relay_key_with_its_default():
    """docs/CONFIG.md has a row for every relay key, showing the model's own default."""
    rows = table_rows(section(CONFIG_DOC.read_text(), "Relay config"))
    missing = [key for key, _ in config_keys(RelayConfig) if key not in rows]
    assert not missing, f"docs/CONFIG.md is missing relay keys: {missing}"
    _check_defaults(RelayConfig, rows)


def test_config_doc_has_every_agent_key_with_its_default():
    """docs/CONFIG.md has a row for every agent key (actions, logSources, codex and
    redaction included), showing the model's own default."""
    rows = table_rows(section(CONFIG_DOC.read_text(), "Agent config"))
    missing = [key for key, _ in config_keys(AgentConfig) if key not in rows]
    assert not missing, f"docs/CONFIG.md is missing agent keys: {missing}"
    _check_defaults(AgentConfig, rows)


def _check_defaults(model: type[BaseModel], rows: dict[str, list[str]]) -> None:
    wrong = []
    for key, default in config_keys(model):
        shown = rows[key][0]
        if default is PydanticUndefined:
            expected = "required"
        elif isinstance(default, BaseModel):
            expected = "see below"
        elif isinstance(default, SCALARS):
            expected = f"`{json.dumps(default)}`"
        else:
            continue
        if shown != expected:
            wrong.append(f"{key}: docs say {shown}, the code says {expected}")
    assert not wrong, "\n".join(wrong)


def test_config_doc_lists_no_key_that_does_not_exist():
    """Every key the reference tables name is a real key (renamed keys cannot linger)."""
    text = CONFIG_DOC.read_text()
    for heading, model in (("Relay config", RelayConfig), ("Agent config", AgentConfig)):
        real = {key for key, _ in config_keys(model)}
        stale = set(table_rows(section(text, heading))) - real
        assert not stale, f"{heading} documents keys that do not exist: {sorted(stale)}"


def test_readme_starts_with_the_two_commands():
    """The README's first lines are `make demo` and `make test`."""
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any(line.startswith("make demo") for line in head)
    assert any(line.startswith("make test") for line in head)


def test_readme_links_every_operator_doc():
    """The README points at the config reference and every operator document."""
    readme = (ROOT / "README.md").read_text()
    for name in OPERATOR_DOCS:
        assert f"(docs/{name})" in readme, f"README does not link docs/{name}"
        assert (DOCS / name).is_file()


def test_security_doc_covers_every_requirement_id():
    """docs/SECURITY.md says how each requirement (A, R, O, I, B) is met or why it is open."""
    text = (DOCS / "SECURITY.md").read_text()
    missing = [rid for rid in REQUIREMENT_IDS if not re.search(rf"\*\*{rid}\*\*", text)]
    assert not missing, f"docs/SECURITY.md does not cover: {missing}"


def test_protocol_doc_names_every_message_and_close_code():
    """docs/PROTOCOL.md describes every message type both ways and every close code."""
    text = (DOCS / "PROTOCOL.md").read_text()
    kinds = []
    for union in (protocol.AgentMessage, protocol.RelayMessage):
        for member in typing.get_args(typing.get_args(union)[0]):
            kinds.append(member.model_fields["type"].default)
    missing = [kind for kind in kinds if f"`{kind}`" not in text]
    assert not missing, f"docs/PROTOCOL.md does not describe: {missing}"
    codes = [
        value
        for name, value in vars(protocol).items()
        if name.startswith("CLOSE_") and isinstance(value, int)
    ]
    assert codes
    assert all(f"`{code}`" in text for code in codes), codes
    assert f"`{protocol.PROTOCOL_VERSION}`" in text
    assert f"{protocol.MAX_MESSAGE_BYTES:,} bytes" in text


def shell_commands(text: str) -> list[str]:
    """Every line of every fenced ```sh block, comments and prompts stripped."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for raw in block.replace("\\\n", " ").splitlines():
            line = raw.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def codexrelay_invocations(line: str) -> list[list[str]]:
    """The argv after each `codexrelay` word of a shell line (pipes and && split it)."""
    found = []
    for part in re.split(r"\|\||&&|\||;", line):
        words = shlex.split(part, posix=True)
        for i, word in enumerate(words[:-1]):
            program = word == "codexrelay" or word.endswith("/bin/codexrelay")
            if program and (i == 0 or words[i - 1] not in VALUE_FLAGS):
                found.append(words[i + 1 :])
                break
    return found


def _check_invocation(argv: list[str]) -> str | None:
    """None if ``argv`` names a real command with real options, else the problem."""
    command: click.Command = main
    rest = list(argv)
    while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = command.get_command(click.Context(command), name)
        if sub is None:
            return f"no command {name!r}"
        command = sub
    if isinstance(command, click.Group):
        return "names a group, not a command"
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {"--help", "-h"}
    for word in rest:
        if word.startswith("-") and word.split("=", 1)[0] not in known:
            return f"unknown option {word}"
    return None


def test_every_documented_command_exists():
    """Every `codexrelay ...` line in the README's and docs' sh blocks is a real command
    with real options, so a renamed command or option breaks this test, not the reader."""
    problems = []
    checked = 0
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for line in shell_commands(path.read_text()):
            for argv in codexrelay_invocations(line):
                checked += 1
                if (problem := _check_invocation(argv)) is not None:
                    problems.append(f"{path.name}: {line!r}: {problem}")
    assert checked >= 20
    assert not problems, "\n".join(problems)


def curl_method(line: str) -> str:
    """The HTTP method a curl line uses: -X if given, POST with -d, else GET."""
    if match := re.search(r"-X\s+([A-Z]+)", line):
        return match.group(1)
    return "POST" if re.search(r"\s(-d|--data)\s", line) else "GET"


def test_every_documented_api_call_exists(app_client):
    """Every curl call to `/api/v1/...` in the operator docs names a real route and method
    of the relay's published OpenAPI document."""
    paths = app_client.get("/openapi.json").json()["paths"]
    routes = [
        (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), set(ops))
        for path, ops in paths.items()
    ]
    wrong = []
    checked = 0
    for name in OPERATOR_DOCS:
        for line in shell_commands((DOCS / name).read_text()):
            if not line.startswith("curl "):
                continue
            for found in re.findall(r"(/api/v1/[A-Za-z0-9_/{}$.-]+)", line):
                checked += 1
                path = re.sub(r"\$\{?[A-Z_]+\}?", "x", found.split("?")[0]).rstrip("/")
                method = curl_method(line).lower()
                if not any(p.match(path) and method in ops for p, ops in routes):
                    wrong.append(f"{name}: {method.upper()} {path}")
    assert checked >= 10
    assert not wrong, "\n".join(wrong)


def test_every_cited_test_file_exists():
    """A test file the docs cite as proof exists (a renamed test cannot leave a dead cite)."""
    cited = set()
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        cited |= set(re.findall(r"`(tests/[A-Za-z0-9_/]+\.py)`", path.read_text()))
    assert cited
    missing = sorted(name for name in cited if not (ROOT / name).is_file())
    assert not missing, missing


def test_every_relative_link_in_the_readme_resolves():
    """Links from the README to docs and screenshots point at files that exist."""
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\((?!https?:|#)([^)#]+)", readme)
    assert targets
    missing = [t for t in targets if not (ROOT / t).exists()]
    assert not missing, missing
