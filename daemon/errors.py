"""User-facing errors: each carries a message for humans and the HTTP status it maps to."""

from __future__ import annotations

from qwendesk.models.errors import ModelFileError, QwendeskError

__all__ = ["ModelFileError", "QwendeskError"]  # re-exported: one error hierarchy for the whole package


class ConfigError(QwendeskError):
    status, code = 400, "config_error"


class BadRequest(QwendeskError):
    status, code = 400, "bad_request"


class Unauthorized(QwendeskError):
    status, code = 401, "unauthorized"


class Forbidden(QwendeskError):
    status, code = 403, "forbidden"


class NotFound(QwendeskError):
    status, code = 404, "not_found"


class Conflict(QwendeskError):
    status, code = 409, "conflict"


class InsufficientResources(QwendeskError):
    """Not enough memory or disk for what was asked."""

    status, code = 507, "insufficient_resources"


class SupervisorError(QwendeskError):
    """Xinference is down, failed or answered something unusable."""

    status, code = 503, "supervisor_error"


class ModelLoadError(QwendeskError):
    """A model failed to start; the message carries the engine's own reason."""

    status, code = 503, "model_load_error"


class AlreadyRunning(QwendeskError):
    status, code = 409, "already_running"


class DaemonNotRunning(QwendeskError):
    """Raised by the HTTP client when nothing answers on the daemon's port."""

    status, code = 503, "daemon_not_running"
