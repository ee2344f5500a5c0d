"""Fixtures for the tray tests: pystray's dummy backend in-process (the X11 tests use a subprocess)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


@pytest.fixture(scope="session")
def pystray_dummy() -> ModuleType:
    """pystray with its `dummy` backend: real Menu/MenuItem/Icon logic, no native UI."""
    previous = os.environ.get("PYSTRAY_BACKEND")
    os.environ["PYSTRAY_BACKEND"] = "dummy"
    try:
        pystray = importlib.import_module("pystray")
    finally:
        if previous is None:
            os.environ.pop("PYSTRAY_BACKEND", None)
        else:
            os.environ["PYSTRAY_BACKEND"] = previous
    if pystray.Icon.__module__ != "pystray._base":
        pytest.skip(f"pystray was already loaded with another backend ({pystray.Icon.__module__})")
    return pystray
