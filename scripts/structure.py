"""Print the shape of a package: modules per folder, import arrows, cycles, longest functions.

Usage: python scripts/structure.py [PACKAGE_DIR]   (default: src/codexrelay/relay)

Import arrows count every ``import``/``from ... import`` of a module inside the package,
including those under ``if TYPE_CHECKING:``. A cycle is a strongly connected set of two or
more modules (or a module importing itself).
"""

from __future__ import annotations

import ast
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"


def module_name(path: Path) -> str:
    """Dotted module name of a file under src/."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(current: str, is_package: bool, node: ast.ImportFrom) -> str:
    """Absolute module name of a ``from X import`` (relative imports resolved)."""
    if node.level == 0:
        return node.module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Modules of the package that ``path`` imports (a ``from pkg import mod`` counts mod)."""
    name = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(name, path.name == "__init__.py", node)
            for alias in node.names:
                if f"{target}.{alias.name}" in modules:
                    found.add(f"{target}.{alias.name}")
                elif target in modules:
                    found.add(target)
    found.discard(name) if path.name == "__init__.py" else None
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def longest_functions(files: list[Path], top: int = 10) -> list[tuple[int, str]]:
    """The longest function bodies, by lines."""
    sizes: list[tuple[int, str]] = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                sizes.append((length, f"{module_name(path)}.{node.name}"))
    return sorted(sizes, reverse=True)[:top]


def main() -> int:
    """Print the report for the package directory given (or the relay)."""
    package = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "codexrelay" / "relay").resolve()
    files = sorted(package.rglob("*.py"))
    modules = {module_name(path) for path in files}
    graph = {module_name(path): imports_of(path, modules) for path in files}
    per_folder = Counter(str(path.parent.relative_to(package)) for path in files)
    print(f"{len(files)} modules in {len(per_folder)} folders under {package.relative_to(ROOT)}")
    for folder, count in sorted(per_folder.items()):
        print(f"  {folder:<20} {count:>3}")
    arrows = sum(len(targets) for targets in graph.values())
    print(f"{arrows} import arrows between them")
    found = cycles(graph)
    print(f"{len(found)} import cycles")
    for component in found:
        print("  " + " <-> ".join(component))
    fan_in: defaultdict[str, int] = defaultdict(int)
    for targets in graph.values():
        for target in targets:
            fan_in[target] += 1
    print(
        "most imported:",
        ", ".join(f"{m} ({n})" for m, n in sorted(fan_in.items(), key=lambda kv: -kv[1])[:5]),
    )
    print("longest functions (lines):")
    for length, name in longest_functions(files):
        print(f"  {length:>4}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
