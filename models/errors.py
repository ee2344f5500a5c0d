"""The package-wide error base (here, at the bottom of the dependency graph) and the errors every layer shares.

Errors carry a stable `code` for programs and a `message` for people; which HTTP status a code becomes is decided
in one place, the daemon (daemon/http_errors.py), never here.
"""

from __future__ import annotations

from typing import ClassVar


class QwendeskError(Exception):
    """An error a person can act on; `message` says what happened and what to do next."""

    code: str = "internal_error"
    _by_code: ClassVar[dict[str, type[QwendeskError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        QwendeskError._by_code.setdefault(cls.code, cls)

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @staticmethod
    def from_code(code: str, message: str) -> QwendeskError:
        """The error a code names (the HTTP client rebuilds errors from response bodies this way)."""
        error = QwendeskError._by_code.get(code, QwendeskError)(message)
        error.code = code  # an unknown code keeps its name even as the base class
        return error


class BadRequest(QwendeskError):
    """The request or argument itself is wrong; repeating it will not help."""

    code = "bad_request"


class NotFound(QwendeskError):
    code = "not_found"


class Conflict(QwendeskError):
    """Not possible in the current state (already there, still copying, in use)."""

    code = "conflict"


class ModelFileError(QwendeskError):
    """A model file is missing, unreadable, corrupt or of an unsupported kind."""

    code = "bad_model_file"


class DownloadError(QwendeskError):
    """A pull failed: network, checksum, or not found upstream."""

    code = "download_error"


class NotEnoughSpace(QwendeskError):
    """The disk has less free space than a write needs."""

    code = "not_enough_space"


class MissingDependency(QwendeskError):
    """An optional part (an extra) that this needs is not installed."""

    code = "missing_dependency"
