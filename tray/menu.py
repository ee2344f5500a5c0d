"""The tray menu as a pure function of TrayState: a list of MenuItemSpec that a thin adapter renders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwendesk.daemon.client import ModelState

from .state import DaemonPhase, TrayState, indexing_text, shown_state

# Action ids carried by menu items; model actions are "start:<name>" / "stop:<name>".
OPEN_CHAT = "open_chat"
OPEN_MODELS_FOLDER = "open_models_folder"
OPEN_DOCUMENTS_FOLDER = "open_documents_folder"
START_DAEMON = "start_daemon"
TOGGLE_AUTOSTART = "toggle_autostart"
QUIT = "quit"
QUIT_ALL = "quit_all"
START_PREFIX, STOP_PREFIX = "start:", "stop:"

ACCELERATORS = {"metal": "Metal", "cpu": "CPU", "cuda": "CUDA", "vulkan": "Vulkan"}
MAX_ERROR_CHARS = 90


@dataclass(frozen=True)
class MenuItemSpec:
    """One menu line: what it says, whether it is checked (None: not checkable), enabled, what it does."""

    text: str
    action: str | None = None
    checked: bool | None = None
    enabled: bool = True
    default: bool = False
    separator: bool = False


SEPARATOR = MenuItemSpec("", enabled=False, separator=True)


def _info(text: str) -> MenuItemSpec:
    return MenuItemSpec(text, enabled=False)


def shorten(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """One line of at most `limit` characters (menus do not wrap)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def status_lines(state: TrayState) -> list[str]:
    """Daemon and supervisor state, accelerator, and the remote endpoint if there is one."""
    if state.daemon == DaemonPhase.DOWN:
        lines = ["qwendesk is not running"]
        if state.daemon_error:
            lines.append(shorten(state.daemon_error))
        return lines
    if state.daemon == DaemonPhase.STARTING:
        return ["Starting qwendesk…"]
    if state.daemon == DaemonPhase.CONNECTING:
        return ["Connecting to qwendesk…"]
    status = state.status
    supervisor: dict[str, Any] = status.get("supervisor") or {}
    accel = (status.get("accelerator") or {}).get("kind")
    parts = ["Daemon: running"]
    if supervisor.get("state"):
        parts.append(f"Xinference: {supervisor['state']}")
    if accel:
        parts.append(ACCELERATORS.get(str(accel).lower(), str(accel)))
    lines = [" · ".join(parts)]
    if supervisor.get("mode") == "remote" and supervisor.get("endpoint"):
        lines.append(f"Remote: {supervisor['endpoint']}")
    if supervisor.get("error"):
        lines.append(shorten(f"Xinference error: {supervisor['error']}"))
    progress = indexing_text(state)
    if progress:
        lines.append(shorten(f"Documents: {progress}"))
    return lines


def model_item(state: TrayState, model: dict[str, Any]) -> MenuItemSpec:
    """A model line: checked when running; click starts or stops; busy models cannot be clicked."""
    name = str(model.get("name"))
    shown = shown_state(state, model)
    if shown == ModelState.STARTING:
        return MenuItemSpec(f"{name} — starting…", checked=False, enabled=False)
    if shown == ModelState.STOPPING:
        return MenuItemSpec(f"{name} — stopping…", checked=True, enabled=False)
    if shown == ModelState.RUNNING:
        return MenuItemSpec(name, STOP_PREFIX + name, checked=True)
    if shown == ModelState.ERROR:
        reason = model.get("error") or "failed to start"
        return MenuItemSpec(shorten(f"{name} — error: {reason}"), START_PREFIX + name, checked=False)
    if shown != ModelState.AVAILABLE:  # a state this tray does not know yet: show it, do not guess an action
        return MenuItemSpec(f"{name} — {shown}", checked=False, enabled=False)
    return MenuItemSpec(name, START_PREFIX + name, checked=False)


def model_items(state: TrayState) -> list[MenuItemSpec]:
    if state.daemon != DaemonPhase.UP:
        return []
    if not state.models:
        return [_info("No models yet — put .gguf files in the models folder")]
    return [model_item(state, m) for m in state.models]


def build_menu_model(state: TrayState) -> list[MenuItemSpec]:
    """The whole menu, top to bottom."""
    up = state.daemon == DaemonPhase.UP
    items = [_info(line) for line in status_lines(state)]
    if state.daemon == DaemonPhase.DOWN:
        items.append(MenuItemSpec("Start qwendesk", START_DAEMON))
    items.append(SEPARATOR)
    models = model_items(state)
    if models:
        items += [*models, SEPARATOR]
    items += [
        MenuItemSpec("Open Chat", OPEN_CHAT, enabled=state.daemon != DaemonPhase.STARTING, default=True),
        MenuItemSpec("Open Models Folder", OPEN_MODELS_FOLDER),
        MenuItemSpec("Open Documents Folder", OPEN_DOCUMENTS_FOLDER),
        MenuItemSpec(
            "Start at Login",
            TOGGLE_AUTOSTART,
            checked=bool(state.autostart),
            enabled=state.autostart is not None,
        ),
        SEPARATOR,
        MenuItemSpec("Quit Tray", QUIT),
        MenuItemSpec("Quit and Stop qwendesk (all models)", QUIT_ALL, enabled=up),
    ]
    return items


def parse_action(action: str) -> tuple[str, str | None]:
    """Split an action id into (verb, model name or None)."""
    for prefix in (START_PREFIX, STOP_PREFIX):
        if action.startswith(prefix):
            return prefix[:-1], action[len(prefix) :]
    return action, None
