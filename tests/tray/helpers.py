"""Builders for daemon-shaped data used by the tray's unit tests."""

from __future__ import annotations

from typing import Any

from qwendesk.tray.state import TrayState, apply_event


def model(name: str, state: str = "available", error: str | None = None, **extra: Any) -> dict[str, Any]:
    """A ModelView as the daemon sends it (only the fields the tray reads, plus a few)."""
    return {"name": name, "file": f"/m/{name}.gguf", "state": state, "error": error, **extra}


def status(
    supervisor_state: str = "stopped",
    mode: str = "embedded",
    endpoint: str | None = None,
    accelerator: str = "cpu",
    error: str | None = None,
) -> dict[str, Any]:
    return {
        "version": "0.1.0",
        "supervisor": {"mode": mode, "state": supervisor_state, "endpoint": endpoint, "error": error},
        "accelerator": {"kind": accelerator},
        "memory": {},
    }


def connected(*models: dict[str, Any], **status_kwargs: Any) -> TrayState:
    """The state right after the `snapshot` event."""
    return apply_event(TrayState(), "snapshot", {"models": list(models), "status": status(**status_kwargs)})
