"""The package's shape, measured from its source: import cycles and private names.

A module that imports another which imports it back (directly or through
others), and a module that takes another's private name (``_migrate``), make
every change cost more: neither can be understood or replaced alone. This file
walks every module of ``rrnet_cli`` with ``ast`` (nothing is imported) and
measures both. The lists below are what the package holds today: a new cycle
or private name fails the test, and so does one that is gone (take it off the
list, so that the list only shrinks). The goal is both lists empty.

Run it as a script for the figures: ``python tests/test_structure.py``.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "rrnet_cli"

#: Import cycles today: each a set of modules that import each other (type-only
#: and function-local imports count: they hide a cycle, they do not break it).
KNOWN_CYCLES = {
    frozenset({"change_notice", "doctor", "form", "household"}),
    frozenset({"ledger.audit", "ledger.folder", "ledger.integrity", "ledger.interface"}),
}
#: Private names taken across modules today: (module, module it takes from, name).
KNOWN_PRIVATE = {
    ("change_notice", "form", "_Setting"),
    ("household", "form", "_FIT_KEYS"),
    ("household", "form", "_Setting"),
    ("household", "form", "_Table"),
    ("household", "form", "_environment"),
    ("household", "form", "_one_per_field"),
    ("ledger.copy", "ledger.folder", "_write_private_json"),
    ("ledger.copy", "ledger.postgres", "_append_record"),
    ("ledger.copy", "ledger.postgres", "_audit_log"),
    ("ledger.copy", "ledger.postgres", "_check_current"),
    ("ledger.copy", "ledger.postgres", "_check_pools"),
    ("ledger.copy", "ledger.postgres", "_guarantees"),
    ("ledger.copy", "ledger.postgres", "_history_counts"),
    ("ledger.copy", "ledger.postgres", "_lock_for_writing"),
    ("ledger.copy", "ledger.postgres", "_migrate"),
}


def modules() -> dict[str, Path]:
    """Every module, by its dotted name under the package (``ledger.folder``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _target(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The module an ``import from`` names, relative to the package (None: not ours)."""
    if node.level == 0:
        name = node.module or ""
        if name != "rrnet_cli" and not name.startswith("rrnet_cli."):
            return None
        return name.removeprefix("rrnet_cli").removeprefix(".")
    base = module.split(".") if module else []
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports(known: dict[str, Path]) -> Iterator[tuple[str, str, str | None]]:
    """(importer, imported module, name taken or None) for every import of ours,
    and for every attribute read through a module imported by name."""
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                target = _target(module, path, node)
                if target is None:
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}".strip(".")
                    if full in known:  # a module imported by name
                        bound[alias.asname or alias.name] = full
                        yield module, full, None
                    else:
                        yield module, target, alias.name
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("rrnet_cli"):
                        name = alias.name.removeprefix("rrnet_cli").removeprefix(".")
                        if alias.asname:
                            bound[alias.asname] = name
                        yield module, name, None
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in bound
            ):
                yield module, bound[node.value.id], node.attr


def private_names(known: dict[str, Path]) -> set[tuple[str, str, str]]:
    return {
        (module, target, name)
        for module, target, name in imports(known)
        if name is not None
        and name.startswith("_")
        and not name.startswith("__")
        and target != module
    }


def cycles(known: dict[str, Path]) -> set[frozenset[str]]:
    """The strongly connected components of the import graph with more than one module."""
    graph: dict[str, set[str]] = {module: set() for module in known}
    for module, target, _ in imports(known):
        if target in known and target != module:
            graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.add(other)
                if other == module:
                    break
            if len(component) > 1:
                found.add(frozenset(component))

    for module in graph:
        if module not in index:
            visit(module)
    return found


def test_no_import_cycle_comes_or_goes_unnoticed() -> None:
    found = cycles(modules())
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, f"new import cycles: {new}"
    assert not gone, f"cycles gone (take them off KNOWN_CYCLES): {gone}"


def test_no_private_name_taken_across_modules_comes_or_goes_unnoticed() -> None:
    found = private_names(modules())
    assert not found - KNOWN_PRIVATE, f"new private names taken: {sorted(found - KNOWN_PRIVATE)}"
    assert not KNOWN_PRIVATE - found, (
        f"private names no longer taken (take them off KNOWN_PRIVATE): "
        f"{sorted(KNOWN_PRIVATE - found)}"
    )


def test_the_walker_sees_a_cycle_and_a_private_name(tmp_path: Path) -> None:
    """The measure itself: a two-module cycle through a function-local import and a
    private name read through a module alias are both found."""
    (tmp_path / "a.py").write_text("from rrnet_cli import b\n\nX = b._hidden\n", encoding="utf-8")
    (tmp_path / "b.py").write_text("def f():\n    from rrnet_cli.a import X\n", encoding="utf-8")
    (tmp_path / "c.py").write_text("from rrnet_cli.b import f\n", encoding="utf-8")
    known = {"a": tmp_path / "a.py", "b": tmp_path / "b.py", "c": tmp_path / "c.py"}
    assert cycles(known) == {frozenset({"a", "b"})}
    assert private_names(known) == {("a", "b", "_hidden")}


def figures() -> dict[str, object]:
    """What the structure issue measures: cycles, private names, sizes."""
    known = modules()
    lengths = {
        name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in known.items()
    }
    long_functions = total_functions = 0
    for path in known.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                total_functions += 1
                long_functions += (node.end_lineno or node.lineno) - node.lineno + 1 > 80
    largest = max(lengths, key=lengths.__getitem__)
    return {
        "import cycles": len(cycles(known)),
        "private names taken across modules": len(private_names(known)),
        "largest module": f"{largest} ({lengths[largest]} lines)",
        "product lines": sum(lengths.values()),
        "functions over 80 lines": f"{long_functions} of {total_functions}",
    }


if __name__ == "__main__":
    for key, value in figures().items():
        print(f"{key}: {value}")
    sys.exit(0)
