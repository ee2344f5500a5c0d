"""The typed content parts of an OpenAI chat body (images, audio), found without changing the body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def content_parts(
    body: dict[str, Any], types: frozenset[str]
) -> Iterator[tuple[str, int, int, dict[str, Any]]]:
    """(where, message index, part index, part) of every part whose `type` is in `types`;
    `where` reads `messages[i].content[j]`, for error messages."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, dict) and part.get("type") in types:
                yield f"messages[{i}].content[{j}]", i, j, part
