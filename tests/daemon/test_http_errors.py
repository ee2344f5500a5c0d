"""Every error the package can raise has an HTTP status decided in one place (daemon/http_errors.py)."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import qwendesk.daemon
import qwendesk.models
from qwendesk.daemon.http_errors import STATUS_BY_CODE, error_body, status_for
from qwendesk.models.errors import QwendeskError

# Internal errors are the one code that is meant to be a 500.
INTERNAL = {"internal_error"}
SKIP = ("qwendesk.daemon.xinference.boot",)  # runs inside Xinference's interpreters, not the daemon


def _all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_all_subclasses(sub)}
    return out


def test_every_error_code_has_a_status() -> None:
    for package in (qwendesk.daemon, qwendesk.models):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not info.name.startswith(SKIP) and not info.name.endswith("__main__"):
                importlib.import_module(info.name)
    # Errors the daemon can serve (installers' errors reach the CLI only, never HTTP).
    served = ("qwendesk.daemon.", "qwendesk.models.")
    ours = [c for c in _all_subclasses(QwendeskError) if c.__module__.startswith(served)]
    codes = {cls.code: cls for cls in ours}
    missing = sorted(code for code in codes if code not in STATUS_BY_CODE and code not in INTERNAL)
    assert not missing, f"add these codes to daemon/http_errors.py STATUS_BY_CODE: {missing}"


@pytest.mark.parametrize(("path", "shape"), [("/api/models", "control"), ("/v1/chat/completions", "openai")])
def test_bodies_carry_the_code(path: str, shape: str) -> None:
    error = QwendeskError.from_code("not_found", "No model named 'x'.")
    body = error_body(path, error.message, error.code, status_for(error))
    if shape == "control":
        assert body == {"error": "No model named 'x'.", "code": "not_found"}
    else:
        assert body["error"]["code"] == "not_found" and body["error"]["type"] == "invalid_request_error"
    assert status_for(error) == 404 and type(error).__name__ == "NotFound"
