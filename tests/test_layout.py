"""The package layout and its dependency rules, checked from the import graph.

The repository's folders are the `quietsync` sub-packages (pyproject's
package-dir); every module's imports are read with `ast` (function-level ones
included), so a rule broken anywhere in the code fails here:

* every import of our own code is ``quietsync.``-qualified (the folder names
  alone are not packages once installed);
* `quietsync.conflicts` (the merge core) and `quietsync.protocol` (the wire
  shapes) are pure: no I/O or asyncio, and they import nothing above them;
* `quietsync.replica` and `quietsync.server` never import each other, nor the
  wiring package; only the wiring (`quietsync.cli`, `.demo`, `.testing`,
  `.pytest_plugin`) imports both.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
FOLDERS = {"quietsync": ROOT / "quietsync"} | {
    package: ROOT / folder for package, folder in PYPROJECT["package-dir"].items()
}
IO = {"asyncio", "sqlite3", "sqlite_utils", "aiohttp", "asyncpg"}
WIRING = {"quietsync.cli", "quietsync.demo", "quietsync.testing", "quietsync.pytest_plugin"}


def _modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package, by its installed name."""
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [*path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            if package == "quietsync" and parts and parts[0] in {"conflicts", "protocol"}:
                continue  # not a folder of quietsync/: mapped from elsewhere
            yield ".".join([package, *parts]), path


def _imports(name: str, path: Path) -> set[str]:
    """The modules `path` imports (relative imports resolved), wherever they appear."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                found.add(".".join([*base, *([node.module] if node.module else [])]))
            else:
                assert node.module is not None
                found.add(node.module)
    return found


GRAPH = {name: _imports(name, path) for name, path in _modules()}


def _layer(module: str) -> str:
    """``quietsync.replica.jobs.tracker`` -> ``quietsync.replica``; the wiring is ``wiring``."""
    parts = module.split(".")
    if parts[0] != "quietsync":
        return parts[0]
    if len(parts) > 1 and parts[1] in {"conflicts", "protocol", "replica", "server"}:
        return f"quietsync.{parts[1]}"
    return "wiring"


def test_the_graph_covers_every_folder() -> None:
    layers = {_layer(m) for m in GRAPH}
    assert layers == {
        "quietsync.conflicts",
        "quietsync.protocol",
        "quietsync.replica",
        "quietsync.server",
        "wiring",
    }
    assert len(GRAPH) > 60


def test_every_own_import_is_namespaced() -> None:
    bare = {"conflicts", "protocol", "replica", "server", "benchmarks", "tests"}
    offenders = {
        (module, imported)
        for module, imports in GRAPH.items()
        for imported in imports
        if imported.split(".")[0] in bare
    }
    assert offenders == set()


@pytest.mark.parametrize("pure", ["quietsync.conflicts", "quietsync.protocol"])
def test_the_pure_layers_import_no_io_and_nothing_above_them(pure: str) -> None:
    allowed = {"quietsync.conflicts"} | ({pure} if pure == "quietsync.protocol" else set())
    for module, imports in GRAPH.items():
        if _layer(module) != pure:
            continue
        for imported in imports:
            top = imported.split(".")[0]
            assert top not in IO, (module, imported)
            if top == "quietsync":
                assert _layer(imported) in allowed, (module, imported)


@pytest.mark.parametrize(
    ("side", "other"),
    [("quietsync.replica", "quietsync.server"), ("quietsync.server", "quietsync.replica")],
)
def test_replica_and_server_never_import_each_other_nor_the_wiring(side: str, other: str) -> None:
    for module, imports in GRAPH.items():
        if _layer(module) == side:
            for imported in imports:
                if imported.startswith("quietsync"):
                    assert _layer(imported) not in {other, "wiring"}, (module, imported)


def test_only_the_wiring_imports_both_sides() -> None:
    both = {
        module
        for module, imports in GRAPH.items()
        if {"quietsync.replica", "quietsync.server"} <= {_layer(i) for i in imports}
    }
    assert both and both <= WIRING


def test_the_declared_packages_are_exactly_the_folders() -> None:
    """A sub-package missing from pyproject's list would be left out of the wheel."""
    folders = {name for name, path in _modules() if path.name == "__init__.py"}
    assert set(PYPROJECT["packages"]) == folders


@pytest.mark.parametrize("package", ["quietsync.conflicts", "quietsync.protocol"])
def test_importing_a_pure_package_loads_no_io_module(package: str) -> None:
    """The top-level package's API is imported lazily, so this holds at run time too."""
    code = (
        f"import sys, {package}; "
        f"print(sorted(m for m in {sorted(IO | {'quietsync.replica', 'quietsync.server'})} "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
