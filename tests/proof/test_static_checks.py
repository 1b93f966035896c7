"""Static proofs: bandit on the product code, pip-audit of the locked runtime dependencies.

bandit must find nothing of high severity (`-lll`), and every ``# nosec`` in src/ must say
why. pip-audit needs PyPI's per-release JSON API (its vulnerability service) over the
network: when that cannot be reached the audit is skipped with the reason, never passed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.helpers import ROOT
from tests.proof.lockfile import direct_dependencies, normalize

LOCK = ROOT / "requirements.lock"
BIN = Path(sys.executable).parent
NOSEC = re.compile(r"#\s*nosec\b(?P<rest>.*)$")


def _tool(name: str) -> str:
    found = BIN / name
    if found.exists():
        return str(found)
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed; it is a test dependency in pyproject.toml")
    return path


def _pins() -> dict[str, str]:
    pins = {}
    for raw in LOCK.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[normalize(name)] = version
    return pins


def test_bandit_finds_no_high_severity_issue():
    """bandit -r src -lll: no high-severity finding in the relay or agent code."""
    res = subprocess.run(
        [_tool("bandit"), "-r", str(ROOT / "src"), "-lll", "-q", "-f", "txt"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert res.returncode == 0, f"bandit found high-severity issues:\n{res.stdout}\n{res.stderr}"


def test_every_nosec_is_justified():
    """Each ``# nosec`` in src/ names the check it silences and says why, on the same line."""
    bare = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = NOSEC.search(line)
            if match and not re.search(r"B\d{3}\s*[-:]\s*\S+", match.group("rest")):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, "write `# nosec B### - why` instead of a bare nosec:\n" + "\n".join(bare)


def test_lock_pins_every_runtime_dependency():
    """requirements.lock pins each direct runtime dependency at a version pyproject allows."""
    pins = _pins()
    problems = []
    for req in direct_dependencies():
        version = pins.get(normalize(req.name))
        if version is None:
            problems.append(f"{req.name} is not pinned")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req.name}=={version} is outside {req.specifier}")
    assert not problems, (
        "requirements.lock is stale; regenerate it with "
        "`.venv/bin/python -m tests.proof.lockfile > requirements.lock`:\n" + "\n".join(problems)
    )


def _audit_service_reason() -> str | None:
    """Why pip-audit's PyPI vulnerability service is unusable here, or None if it answers."""
    name, version = next(iter(sorted(_pins().items())))
    url = f"https://pypi.org/pypi/{name}/{version}/json"
    try:
        res = httpx.get(url, timeout=15, follow_redirects=True)
    except httpx.HTTPError as exc:
        return f"PyPI's vulnerability service is unreachable ({type(exc).__name__} for {url})"
    if res.status_code != 200 or "vulnerabilities" not in res.text:
        return f"PyPI's vulnerability service did not answer {url} (HTTP {res.status_code})"
    return None


def test_pip_audit_of_locked_dependencies():
    """pip-audit -r requirements.lock --strict: no known vulnerability in what we ship."""
    reason = _audit_service_reason()
    if reason is not None:
        pytest.skip(f"pip-audit cannot run: {reason}")
    res = subprocess.run(
        [
            _tool("pip-audit"),
            "-r",
            str(LOCK),
            "--strict",
            "--no-deps",
            "--disable-pip",
            "--progress-spinner",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0, f"pip-audit failed:\n{res.stdout}\n{res.stderr}"
