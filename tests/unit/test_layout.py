"""The relay's package layout holds: imports run api -> domain -> storage, nothing cycles
(``TYPE_CHECKING`` imports included), and docs/ARCHITECTURE.md names only real code."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from tests.helpers import ROOT

RELAY = "codexrelay.relay"
DOMAIN = ("access", "agents", "tasks", "audit", "push", "conversations")


def _structure() -> ModuleType:
    spec = importlib.util.spec_from_file_location("structure", ROOT / "scripts/structure.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["structure"] = module
    spec.loader.exec_module(module)
    return module


def _graph() -> dict[str, set[str]]:
    structure = _structure()
    files = sorted((ROOT / "src/codexrelay/relay").rglob("*.py"))
    modules = {structure.module_name(path) for path in files}
    return {structure.module_name(path): structure.imports_of(path, modules) for path in files}


def _part(module: str) -> str:
    """The first package (or top module) under the relay: ``storage``, ``api``, ``app``..."""
    rest = module.removeprefix(f"{RELAY}.")
    return rest.split(".", 1)[0] if module != RELAY else ""


def test_relay_has_no_import_cycles():
    """No two relay modules import each other, directly or around a loop."""
    assert _structure().cycles(_graph()) == []


def test_imports_point_one_way():
    """storage imports only storage; views only storage; domain packages never reach up to
    the HTTP layer, the app or operator commands; only the app and operator commands import
    the HTTP routes."""
    allowed_below = {
        "storage": {"storage"},
        "views": {"storage"},
        **{name: {"storage", "views", "config", "events", "services", "http", *DOMAIN}
           for name in DOMAIN},
    }  # fmt: skip
    wrong = []
    for module, targets in _graph().items():
        part = _part(module)
        for target in targets:
            goes_to = _part(target)
            if part in allowed_below and goes_to not in allowed_below[part]:
                wrong.append(f"{module} -> {target}")
            if goes_to == "api" and part not in {"api", "app", "ops"}:
                wrong.append(f"{module} -> {target}")
            if goes_to == "app" and part != "ops":
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_architecture_doc_names_real_code():
    """Every module path and ``module.function`` the architecture doc names exists."""
    text = (ROOT / "docs/ARCHITECTURE.md").read_text()
    paths = set(re.findall(r"`(src/codexrelay/[\w/]+\.py)`", text))
    assert paths, "the doc names no modules"
    missing = [p for p in sorted(paths) if not (ROOT / p).is_file()]
    assert missing == []
    names = set(re.findall(r"`(codexrelay(?:\.\w+)+)`", text))
    assert names, "the doc names no functions"
    unresolved = []
    for dotted in sorted(names):
        module_name, _, attr = dotted.rpartition(".")
        try:
            found = hasattr(importlib.import_module(dotted), "__name__")
        except ModuleNotFoundError:
            found = hasattr(importlib.import_module(module_name), attr)
        if not found:
            unresolved.append(dotted)
    assert unresolved == []


def test_relay_modules_stay_small():
    """STYLE.md: modules under about 400 lines."""
    big = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "src/codexrelay/relay").rglob("*.py")
        if (n := len(path.read_text().splitlines())) > 450
    }
    assert big == {}


def test_relay_folder_is_not_flat():
    """The relay reads as its feature list: a handful of modules at the top, the rest in
    packages named by their nouns."""
    top = sorted(p.name for p in Path(ROOT / "src/codexrelay/relay").glob("*.py"))
    assert len(top) <= 7, top
