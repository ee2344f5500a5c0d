"""Runs at start-up of every Python interpreter of the embedded Xinference (its PYTHONPATH points here).

qwendesk puts this folder on the PYTHONPATH of the `xinference-local` it starts, and only of that one, so
the light mode of the boot package applies to that Xinference's processes (API, supervisor/worker, model
sub-pools) and never to the daemon, a remote cluster or the user's own Python. It makes the boot folder
importable as `_qwendesk_boot` (without importing qwendesk, whose package imports pydantic and the daemon),
installs light.py's finder and, in the worker, the fork server; then runs any sitecustomize this one hides.
"""

from __future__ import annotations

import os
import sys
import types


def _boot_package() -> types.ModuleType:
    package = sys.modules.get("_qwendesk_boot")
    if package is None:
        package = types.ModuleType("_qwendesk_boot", "qwendesk's boot modules inside Xinference")
        package.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        sys.modules["_qwendesk_boot"] = package
    return package


def _chain() -> None:
    """Run the next sitecustomize on sys.path (a venv's or the distribution's), which this file shadows."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _main() -> None:
    if os.environ.get("QWENDESK_XINFERENCE_LIGHT", "1") != "0":
        _boot_package()
        from _qwendesk_boot import light

        light.install()
        from _qwendesk_boot import forkserver

        forkserver.install()
    _chain()


_main()
