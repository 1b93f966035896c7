"""The service worker's shell list: `cache.addAll` rejects the whole install on one missing
file or one repeated entry, and then the app never works offline (R19)."""

from __future__ import annotations

import re
from pathlib import Path

import codexrelay

WEB = Path(codexrelay.__file__).parent / "web"


def _shell() -> list[str]:
    text = (WEB / "sw.js").read_text()
    block = re.search(r"const SHELL = \[(.*?)\];", text, re.S)
    assert block is not None, "sw.js has no SHELL list"
    return re.findall(r'"([^"]+)"', block.group(1))


def test_the_shell_lists_each_file_once():
    shell = _shell()
    repeated = sorted({path for path in shell if shell.count(path) > 1})
    assert repeated == []


def test_every_shell_file_exists():
    missing = [p for p in _shell() if p != "/" and not (WEB / p.lstrip("/")).is_file()]
    assert missing == []


def _imported_from(entry: Path) -> set[str]:
    """Every module the app loads from ``entry``, following static imports."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        for target in re.findall(
            r'^\s*(?:import|export)\b[^;]*?from\s+"([^"]+)"', module.read_text(), re.M
        ):
            if target.startswith("."):
                todo.append((module.parent / target).resolve())
    return {"/" + str(path.relative_to(WEB.resolve())) for path in seen}


def test_every_app_module_is_in_the_shell():
    """A module the app imports but the shell leaves out breaks the app offline."""
    loaded = _imported_from((WEB / "app.js").resolve())
    assert len(loaded) > 20  # the walk follows the imports
    assert sorted(loaded - set(_shell())) == []
