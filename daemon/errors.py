"""The daemon's errors (the shared base and categories live in models/errors.py; HTTP statuses in http_errors.py)."""

from __future__ import annotations

from qwendesk.models.errors import (
    BadRequest,
    Conflict,
    ModelFileError,
    NotEnoughSpace,
    NotFound,
    QwendeskError,
)

__all__ = [  # re-exported: the daemon, the CLI and the tray import every error from here
    "BadRequest",
    "Conflict",
    "ModelFileError",
    "NotEnoughSpace",
    "NotFound",
    "QwendeskError",
]


class ContextLengthExceeded(BadRequest):
    """A request does not fit in the model's context (OpenAI's code for it)."""

    code = "context_length_exceeded"


class ConfigError(BadRequest):
    """A setting is invalid, or the daemon cannot start as configured."""

    code = "config_error"


class Unauthorized(QwendeskError):
    code = "unauthorized"


class Forbidden(QwendeskError):
    code = "forbidden"


class NotEnoughMemory(QwendeskError):
    """A model would not fit in the memory available now."""

    code = "not_enough_memory"


class SupervisorError(QwendeskError):
    """Xinference is down, failed or answered something unusable."""

    code = "xinference_unavailable"


class ModelLoadError(QwendeskError):
    """A model failed to start; the message carries the engine's own reason."""

    code = "model_load_failed"


class EngineError(QwendeskError):
    """A running model's engine failed a request or stopped answering."""

    code = "engine_error"


class AlreadyRunning(Conflict):
    code = "already_running"


class DaemonNotRunning(QwendeskError):
    """Raised by the HTTP client when nothing answers on the daemon's port."""

    code = "daemon_not_running"


def describe_problems(problems: list[dict]) -> str:
    """pydantic's / FastAPI's validation errors as one line: `field.sub: message; ...` ("body" dropped)."""
    parts = []
    for item in problems:
        if not isinstance(item, dict):
            parts.append(str(item))
            continue
        loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
        msg = item.get("msg", item)
        parts.append(f"{loc}: {msg}" if loc else str(msg))
    return "; ".join(parts)
