"""What the tray knows about the daemon, and the pure functions that change it (no I/O, no pystray)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from types import MappingProxyType
from typing import Any

from qwendesk.daemon.client import ModelState

# A str enum: its members compare equal to the state strings of the daemon's JSON.
BUSY_STATES = (ModelState.STARTING, ModelState.STOPPING)


class DaemonPhase(str, Enum):
    """How the tray sees the daemon."""

    CONNECTING = "connecting"  # tray just started, nothing heard yet
    STARTING = "starting"  # the tray launched a daemon and waits for it
    UP = "up"  # the event stream is connected
    DOWN = "down"  # nothing answers


class IconState(str, Enum):
    OFFLINE = "offline"
    IDLE = "idle"
    LOADING = "loading"
    RUNNING = "running"
    ERROR = "error"


@dataclass(frozen=True)
class TrayState:
    """One immutable picture of the daemon; every event yields a new one."""

    daemon: DaemonPhase = DaemonPhase.CONNECTING
    status: dict[str, Any] = field(default_factory=dict)
    models: tuple[dict[str, Any], ...] = ()
    pending: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    daemon_error: str | None = None
    autostart: bool | None = None  # None: auto-start at login is not available here
    # Document collections being indexed: name -> the daemon's last `indexing` event for it.
    indexing: MappingProxyType[str, dict[str, Any]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Notice:
    """Something worth a desktop notification."""

    title: str
    message: str


# ---- reducers ------------------------------------------------------------------------------------
def _sorted(models: list[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    return tuple(sorted(models, key=lambda m: str(m.get("name", "")).lower()))


def apply_event(state: TrayState, event: str, data: Any) -> TrayState:
    """Fold one server-sent event of GET /api/events into the state."""
    if event == "snapshot" and isinstance(data, dict):
        return replace(
            state,
            daemon=DaemonPhase.UP,
            daemon_error=None,
            models=_sorted(list(data.get("models") or [])),
            status=dict(data.get("status") or {}),
        )  # pending clicks stay: their requests are still in flight and clear themselves
    if event == "model" and isinstance(data, dict) and data.get("name"):
        others = [m for m in state.models if m.get("name") != data["name"]]
        return replace(state, models=_sorted([*others, data]))  # removals come as a new snapshot
    if event == "status" and isinstance(data, dict):
        return replace(state, status=dict(data))
    if event == "indexing" and isinstance(data, dict) and data.get("collection"):
        return _with_indexing(state, str(data["collection"]), None if data.get("phase") == "done" else data)
    settled = isinstance(data, dict) and (
        data.get("removed") or data.get("state") not in ("indexing", "embedding")
    )
    if event == "collection" and settled and data.get("name"):
        return _with_indexing(state, str(data["name"]), None)  # in case its "done" was missed
    return state  # unknown events (pings, future additions) change nothing


def _with_indexing(state: TrayState, name: str, progress: dict[str, Any] | None) -> TrayState:
    indexing = dict(state.indexing)
    if progress is None:
        if name not in indexing:
            return state
        del indexing[name]
    else:
        indexing[name] = dict(progress)
    return replace(state, indexing=MappingProxyType(indexing))


def daemon_starting(state: TrayState) -> TrayState:
    return replace(state, daemon=DaemonPhase.STARTING, daemon_error=None)


def daemon_down(state: TrayState, error: str | None = None) -> TrayState:
    """The daemon went away: forget its models, keep what the user needs to bring it back."""
    return replace(
        state,
        daemon=DaemonPhase.DOWN,
        daemon_error=error,
        models=(),
        status={},
        pending=MappingProxyType({}),
        indexing=MappingProxyType({}),
    )


def with_pending(state: TrayState, name: str, op: str | None) -> TrayState:
    """Mark (op='start'/'stop') or clear (op=None) a click whose request is still in flight."""
    pending = dict(state.pending)
    if op is None:
        pending.pop(name, None)
    else:
        pending[name] = op
    return replace(state, pending=MappingProxyType(pending))


def with_autostart(state: TrayState, enabled: bool | None) -> TrayState:
    return replace(state, autostart=enabled)


# ---- derived views -------------------------------------------------------------------------------
def shown_state(state: TrayState, model: dict[str, Any]) -> str:
    """The state a model is shown in: the daemon's, or starting/stopping while a click is in flight."""
    actual = str(model.get("state") or ModelState.AVAILABLE.value)
    if actual in BUSY_STATES:
        return actual
    op = state.pending.get(str(model.get("name")))
    if op == "start":
        return ModelState.STARTING.value
    if op == "stop":
        return ModelState.STOPPING.value
    return actual


def icon_state(state: TrayState) -> IconState:
    """Which icon the tray shows: offline, error, loading, running or idle (in that priority)."""
    if state.daemon == DaemonPhase.DOWN:
        return IconState.OFFLINE
    if state.daemon in (DaemonPhase.STARTING, DaemonPhase.CONNECTING):
        return IconState.LOADING
    shown = [shown_state(state, m) for m in state.models]
    supervisor = state.status.get("supervisor") or {}
    if ModelState.ERROR in shown or supervisor.get("state") == "failed":
        return IconState.ERROR
    if any(s in BUSY_STATES for s in shown) or supervisor.get("state") in ("starting", "restarting"):
        return IconState.LOADING
    if ModelState.RUNNING in shown:
        return IconState.RUNNING
    return IconState.IDLE


def notices(old: TrayState, new: TrayState) -> list[Notice]:
    """Notifications for errors that appeared between two states (a model failing, Xinference failing)."""
    found: list[Notice] = []
    before = {m.get("name"): m for m in old.models}
    for model in new.models:
        prior = before.get(model.get("name"))
        if model.get("state") == ModelState.ERROR and (
            prior is None or prior.get("state") != ModelState.ERROR
        ):
            if prior is None and old.daemon != DaemonPhase.UP:
                continue  # already failed before we connected: the menu shows it, no pop-up
            found.append(
                Notice(
                    f"{model.get('name')} failed to start",
                    str(model.get("error") or "The model stopped with an error; see the daemon log."),
                )
            )
    old_sup = old.status.get("supervisor") or {}
    new_sup = new.status.get("supervisor") or {}
    if new_sup.get("state") == "failed" and old_sup.get("state") != "failed" and old.daemon == DaemonPhase.UP:
        found.append(Notice("Xinference failed", str(new_sup.get("error") or "See the daemon log.")))
    return found


def indexing_text(state: TrayState) -> str | None:
    """`indexing notes 40/120 files`, `embedding notes 300/900 chunks`, `indexing 2 collections`; None when idle."""
    if not state.indexing:
        return None
    if len(state.indexing) > 1:
        return f"indexing {len(state.indexing)} collections"
    name, progress = next(iter(state.indexing.items()))
    if progress.get("phase") == "embed" and progress.get("chunks_total"):
        return f"embedding {name} {progress.get('chunks_done', 0)}/{progress['chunks_total']} chunks"
    if progress.get("phase") == "index" and progress.get("files_total"):
        return f"indexing {name} {progress.get('files_done', 0)}/{progress['files_total']} files"
    return f"indexing {name}"


def title_text(state: TrayState) -> str:
    """Tooltip / window title: one short line (with indexing progress while documents are indexed)."""
    title = _models_title(state)
    progress = indexing_text(state) if state.daemon == DaemonPhase.UP else None
    return f"{title} · {progress}" if progress else title


def _models_title(state: TrayState) -> str:
    if state.daemon == DaemonPhase.DOWN:
        return "qwendesk — daemon not running"
    if state.daemon in (DaemonPhase.STARTING, DaemonPhase.CONNECTING):
        return "qwendesk — starting…"
    running = [m for m in state.models if m.get("state") == ModelState.RUNNING]
    if not running:
        # A launch takes seconds to minutes: say so rather than "no model running" meanwhile.
        starting = next((m for m in state.models if shown_state(state, m) == ModelState.STARTING), None)
        return f"qwendesk — starting {starting.get('name')}…" if starting else "qwendesk — no model running"
    if len(running) == 1:
        return f"qwendesk — {running[0].get('name')} running"
    return f"qwendesk — {len(running)} models running"
