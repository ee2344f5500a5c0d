"""Reading Xinference's log: the engine's real reason for a failed load, and the last lines for errors."""

from __future__ import annotations

import re
from pathlib import Path

# llama.cpp / xllamacpp lines that name the real cause of a failed load, best first, with a hint.
FAILURE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"invalid magic", re.I), "the file is not a GGUF model or is corrupt"),
    (re.compile(r"not within the file bounds", re.I), "the file is truncated (incomplete download?)"),
    (
        re.compile(r"No such file or directory|failed to open|file not found", re.I),
        "the model file is missing",
    ),
    (re.compile(r"out of memory|failed to allocate|cannot allocate|\bOOM\b", re.I), "not enough memory"),
    (re.compile(r"unknown model architecture", re.I), "llama.cpp does not support this architecture"),
    (re.compile(r"error loading model|failed to load model", re.I), "llama.cpp could not load the model"),
]
# Xinference's line prefix: "2026-11-25T08:54:04.327Z ERROR logger pid:1 role:local address:… node:vm "
# and llama.cpp's "0.00.160.115 E ".
_LOG_PREFIX = re.compile(
    r"^(?:\d{4}-\d\d-\d\dT\S+\s+[A-Z]+\s+\S+\s+(?:[a-z_]+:\S*\s+)*|\d+\.\d+\.\d+\.\d+\s+[A-Z]\s+)"
)
MAX_SCAN = 4 * 1024 * 1024


def explain_log_text(text: str) -> str | None:
    """The engine's reason for a failed load found in log text, as one short human line."""
    lines = text.splitlines()
    for pattern, hint in FAILURE_PATTERNS:
        for line in lines:
            if pattern.search(line):
                detail = _LOG_PREFIX.sub("", line.strip())
                detail = detail if len(detail) <= 240 else detail[:237] + "..."
                return f"{hint} (llama.cpp: {detail})"
    return None


def explain_log_file(path: Path, since: int) -> str | None:
    """Scan a log written since byte offset `since` (from 0 if the log was truncated meanwhile)."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            start = since if 0 <= since <= size else 0
            start = max(start, size - MAX_SCAN)
            fh.seek(start)
            text = fh.read().decode(errors="replace")
    except OSError:
        return None
    return explain_log_text(text)


def log_tail(path: Path, lines: int = 15, limit: int = 2000) -> str:
    """Last lines of a log, for error messages."""
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return ""
    tail = "\n".join(line for line in text.splitlines()[-lines:] if line.strip())
    return tail[-limit:]
