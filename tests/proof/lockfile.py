"""The runtime dependency closure of codexrelay as installed, pinned, for ``requirements.lock``.

Run ``.venv/bin/python -m tests.proof.lockfile > requirements.lock`` after a dependency
change; pip-audit then audits exactly what a relay or agent runs (tests not included).
"""

from __future__ import annotations

import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
HEADER = """\
# Pinned runtime dependency closure of codexrelay (pyproject [project] dependencies and the
# postgres extra, uvicorn[standard] extras included), as installed for the test suite. Audited by
# tests/proof/test_static_checks.py with `pip-audit -r requirements.lock --strict`.
# Regenerate after a dependency change: .venv/bin/python -m tests.proof.lockfile > requirements.lock
"""


def normalize(name: str) -> str:
    """PEP 503 name normalization."""
    return re.sub(r"[-_.]+", "-", name).lower()


def direct_dependencies() -> list[Requirement]:
    """The ``[project] dependencies`` of pyproject.toml, and its ``postgres`` extra (what a
    relay on PostgreSQL runs)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    specs = data["project"]["dependencies"] + data["project"]["optional-dependencies"]["postgres"]
    return [Requirement(spec) for spec in specs]


def runtime_closure() -> dict[str, str]:
    """Normalized name -> installed version for every runtime dependency, transitively."""
    versions: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(req.name, frozenset(req.extras)) for req in direct_dependencies()]
    while pending:
        name, extras = pending.pop()
        if (normalize(name), extras) in seen:
            continue
        seen.add((normalize(name), extras))
        dist = metadata.distribution(name)
        versions[normalize(name)] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            wanted = extras or {""}
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in wanted):
                pending.append((req.name, frozenset(req.extras)))
    return versions


def render() -> str:
    """The lock file's text."""
    pins = runtime_closure()
    return HEADER + "".join(f"{name}=={pins[name]}\n" for name in sorted(pins))


if __name__ == "__main__":
    sys.stdout.write(render())
