"""The package layout and the direction of dependencies stay as designed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP = ("daemon", "tray", "models", "installers")


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_sub_package_is_listed_for_installation() -> None:
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = {
        "qwendesk." + ".".join(init.parent.relative_to(REPO).parts)
        for top in TOP
        for init in (REPO / top).rglob("__init__.py")
    }
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    package = "qwendesk." + ".".join(path.relative_to(REPO).parent.parts)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                out.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                out.add(node.module)
    return out


def _sources(top: str) -> list[Path]:
    return [p for p in (REPO / top).rglob("*.py")]


def test_nothing_imports_the_tray() -> None:
    for top in ("daemon", "models", "installers"):
        for path in _sources(top):
            bad = [m for m in _imports(path) if m.startswith("qwendesk.tray")]
            assert not bad, f"{path} imports {bad}"


def test_models_do_not_import_the_daemon() -> None:
    for path in _sources("models"):
        bad = [m for m in _imports(path) if m.startswith("qwendesk.daemon")]
        assert not bad, f"{path} imports {bad}"


def test_the_tray_uses_only_the_daemons_http_client() -> None:
    allowed = ("qwendesk.daemon.client", "qwendesk.daemon.errors", "qwendesk.daemon.config")
    for path in _sources("tray"):
        bad = [m for m in _imports(path) if m.startswith("qwendesk.daemon") and not m.startswith(allowed)]
        assert not bad, f"{path} imports daemon internals {bad}"


def _top_level_imports(path: Path) -> set[str]:
    """Imports that run when the module is imported (not in functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), str(path))
    # The module's dotted path; `from . import x` is relative to the package that holds it.
    module = "qwendesk." + ".".join(path.relative_to(REPO).with_suffix("").parts)
    out: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try)):
                visit(node.body + node.orelse + getattr(node, "finalbody", []))
            elif isinstance(node, ast.Import):
                out.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = module.split(".")[: -node.level] if node.level else []
                source = ".".join(base + ([node.module] if node.module else []))
                # `from pkg import name` imports the module pkg.name when there is one, else pkg itself.
                out.update(f"{source}.{a.name}" for a in node.names)

    visit(tree.body)
    return {m for m in out if m.startswith("qwendesk.")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return "qwendesk." + ".".join(parts)


def test_no_import_cycles() -> None:
    """Modules import each other one way only (a cycle makes import order matter, and hides a design knot)."""
    graph: dict[str, set[str]] = {}
    for top in TOP:
        for path in _sources(top):
            graph[_module_name(path)] = _top_level_imports(path)
    modules = set(graph)

    def targets(name: str) -> set[str]:
        out = set()
        for imported in graph[name]:
            while imported and imported not in modules:  # `from pkg import name` names a module or a symbol
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                out.add(imported)
        return out

    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for nxt in targets(name):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[name] = 2

    for name in sorted(modules):
        if name not in state:
            walk(name)


@pytest.mark.parametrize(
    ("room", "forbidden"),
    [
        # Xinference is reached through the lifecycle: it knows nothing of models' states or of routes.
        ("daemon/xinference", ("qwendesk.daemon.lifecycle", "qwendesk.daemon.routes", "qwendesk.daemon.app")),
        # The lifecycle hands routes an Endpoint; it never serves HTTP itself.
        ("daemon/lifecycle", ("qwendesk.daemon.routes", "qwendesk.daemon.app", "qwendesk.daemon.server")),
        # The HTTP client (CLI, tray) speaks HTTP only: no server-side module behind it.
        (
            "daemon/client.py",
            ("qwendesk.daemon.lifecycle", "qwendesk.daemon.xinference", "qwendesk.daemon.routes"),
        ),
        ("installers", ("qwendesk.daemon.lifecycle", "qwendesk.daemon.xinference", "qwendesk.daemon.routes")),
        # Images and speech are rooms the lifecycle and routes use; they never reach back into them.
        (
            "daemon/vision",
            ("qwendesk.daemon.lifecycle", "qwendesk.daemon.xinference", "qwendesk.daemon.routes"),
        ),
        (
            "daemon/speech",
            ("qwendesk.daemon.lifecycle", "qwendesk.daemon.xinference", "qwendesk.daemon.routes"),
        ),
    ],
)
def test_rooms_import_only_downwards(room: str, forbidden: tuple[str, ...]) -> None:
    root = REPO / room
    for path in [root] if root.is_file() else _sources(room):
        bad = [m for m in _imports(path) if m.startswith(forbidden)]
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_every_package_data_pattern_matches_a_file() -> None:
    setuptools = _pyproject()["tool"]["setuptools"]
    for package, patterns in setuptools["package-data"].items():
        top, _, rest = package.removeprefix("qwendesk.").partition(".")
        folder = REPO / setuptools["package-dir"][f"qwendesk.{top}"] / rest.replace(".", "/")
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches nothing in {folder}"
