"""The package layout and the direction of dependencies stay as designed."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

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
