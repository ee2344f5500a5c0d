"""What runs inside the embedded Xinference's own interpreters to make it lighter (never in a remote one)."""

from __future__ import annotations

from collections.abc import Mapping


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to the embedded Xinference's environment (none yet)."""
    return {}
