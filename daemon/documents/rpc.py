"""The line protocol between the daemon and its documents worker: one JSON object per line, in both directions.

A request is `{"id", "method", "params"}`, its answer `{"id", "result"}` or `{"id", "error": {"code",
"message"}}`; a notification is `{"method", "params"}` without an id. Either side may send requests (the
worker asks the daemon to run its embedding model). JSON escapes every newline inside strings, so a line
is always one whole message.
"""

from __future__ import annotations

import json
from typing import Any

from qwendesk.models.errors import QwendeskError

MAX_LINE = 256 * 2**20  # a search answer or a batch of chunk texts: far below this


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"not a message: {line[:80]!r}")
    return message


def error_payload(exc: BaseException) -> dict[str, str]:
    """An exception as the answer's `error`: a QwendeskError keeps its code and message."""
    if isinstance(exc, QwendeskError):
        return {"code": exc.code, "message": exc.message}
    return {"code": "internal_error", "message": f"{type(exc).__name__}: {exc}"}


def error_from(payload: Any) -> QwendeskError:
    """The QwendeskError an answer's `error` names."""
    if not isinstance(payload, dict):
        return QwendeskError(str(payload))
    return QwendeskError.from_code(str(payload.get("code") or "internal_error"), str(payload.get("message")))
