"""The tray app: wires state, menu, icon, the event follower and the click workers together.

Threads: pystray's loop owns the main thread (required on macOS); the event follower and the
click workers are background threads that only swap the immutable TrayState under a lock and then
ask the UI to refresh; nothing slow ever runs on the UI thread.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import webbrowser
from collections.abc import Callable
from concurrent.futures import Future, wait
from pathlib import Path
from types import ModuleType
from typing import Any

from qwendesk.daemon.client import DaemonClient
from qwendesk.daemon.errors import QwendeskError

from . import backend, launcher
from .follower import EventFollower
from .icons import icon_image
from .login import LoginItem
from .menu import (
    OPEN_CHAT,
    OPEN_DOCUMENTS_FOLDER,
    OPEN_MODELS_FOLDER,
    QUIT,
    QUIT_ALL,
    START_DAEMON,
    TOGGLE_AUTOSTART,
    MenuItemSpec,
    build_menu_model,
    parse_action,
)
from .state import (
    DaemonPhase,
    IconState,
    Notice,
    TrayState,
    apply_event,
    daemon_down,
    daemon_starting,
    icon_state,
    notices,
    title_text,
    with_autostart,
    with_pending,
)

log = logging.getLogger(__name__)
ICON_NAME = "qwendesk"


class TrayApp:
    """One tray icon for one daemon (the one `settings` points at)."""

    def __init__(
        self,
        settings: Any,
        *,
        start_daemon: bool = True,
        client_factory: Callable[[], DaemonClient] | None = None,
        browser: Callable[[str], Any] = webbrowser.open,
        folder_opener: Callable[[Path], Any] = launcher.open_folder,
        launch: Callable[[Any], subprocess.Popen] = launcher.launch_daemon,
        login: LoginItem | None = None,
        template: bool | None = None,
        health_timeout: float = launcher.HEALTH_TIMEOUT,
    ) -> None:
        self.settings = settings
        self._client_factory = client_factory or (lambda: DaemonClient.from_settings(settings, timeout=15))
        self.client = self._client_factory()
        self._start_daemon = start_daemon
        self._browser = browser
        self._folder_opener = folder_opener
        self._launch = launch
        self._login = login if login is not None else LoginItem(settings)
        self._template = (sys.platform == "darwin") if template is None else template
        self._health_timeout = health_timeout

        self._lock = threading.RLock()
        self._ui_lock = threading.Lock()
        self._launch_lock = threading.Lock()
        self._launching = False
        self._state = TrayState()
        self._futures: list[Future] = []
        self._follower: EventFollower | None = None
        self._child: subprocess.Popen | None = None
        self._shown_icon: IconState | None = None
        self._ui_call = backend.ui_caller()
        self.pystray: ModuleType | None = None
        self._icon_cls: type = object
        self.icon: Any = None
        self.notified: list[Notice] = []  # what was (or would have been) shown as a notification

    # ---- state ---------------------------------------------------------------------------------
    @property
    def state(self) -> TrayState:
        with self._lock:
            return self._state

    def menu_specs(self) -> list[MenuItemSpec]:
        return build_menu_model(self.state)

    def update(self, change: Callable[[TrayState], TrayState], *, refresh: bool = True) -> None:
        """Swap in a new state, raise notifications for new errors, refresh the icon and menu."""
        with self._lock:
            old = self._state
            new = self._state = change(old)
        for notice in notices(old, new):
            self.notify(notice)
        if refresh and new != old:
            self.refresh()

    def on_event(self, event: str, data: Any) -> None:
        if event == "model" and isinstance(data, dict):
            log.debug("model %s: %s", data.get("name"), data.get("state"))
        else:
            log.debug("daemon event: %s", event)
        self.update(lambda s: apply_event(s, event, data))

    def on_down(self, reason: str | None) -> None:
        child = self._child
        if child is not None and child.poll() is not None:
            self._child = None  # reap the daemon we launched, if it exited
        if self._launching:
            return  # the launcher shows "Starting…" until /health answers or it gives up
        self.update(lambda s: daemon_down(s, reason))

    # ---- the icon ------------------------------------------------------------------------------
    def create_icon(self, pystray: ModuleType | None = None) -> Any:
        """Build the pystray Icon (not yet shown) with a menu rendered from the current state."""
        self.pystray = pystray or backend.load_pystray()
        menu = self.pystray.Menu(lambda: backend.render_menu(self.pystray, self.menu_specs(), self.on_action))
        state = self.state
        kind = icon_state(state)
        self._icon_cls = backend.icon_class(self.pystray)
        self.icon = self._icon_cls(ICON_NAME, self._image(kind), self._title(state), menu)
        self._shown_icon = kind
        return self.icon

    def _image(self, kind: IconState) -> Any:
        return backend.prepare_image(self._icon_cls, icon_image(kind, self._template))

    def _title(self, state: TrayState) -> str:
        return backend.prepare_title(self._icon_cls, title_text(state))

    def refresh(self) -> None:
        """Push the current state to the icon image, tooltip and native menu."""
        icon = self.icon
        if icon is None:
            return

        def push() -> None:
            with self._ui_lock:  # xorg forwards calls to its loop through one queue: one at a time
                # Read the state here, not when asked: the last push always shows the newest state.
                state = self.state
                kind, title = icon_state(state), self._title(state)
                try:
                    with backend.xlib_unstuck(icon):
                        if kind != self._shown_icon:
                            icon.icon = self._image(kind)
                            self._shown_icon = kind
                        icon.title = title
                        icon.update_menu()
                        backend.flush(icon)
                    log.debug("icon shows %s: %s", kind.value, title)
                except NotImplementedError:
                    pass  # pystray's dummy backend has no native icon or menu to update
                except Exception:
                    log.warning("could not update the tray icon", exc_info=True)

        self._ui_call(push)

    def notify(self, notice: Notice) -> None:
        """A desktop notification where the backend has them; otherwise only the log and the menu."""
        self.notified.append(notice)
        log.warning("%s: %s", notice.title, notice.message)
        icon = self.icon
        if icon is None or not getattr(icon, "HAS_NOTIFICATION", False) or not icon.visible:
            return
        try:
            icon.notify(notice.message, notice.title)
        except Exception:  # e.g. no notification daemon on the session bus
            log.debug("notification failed", exc_info=True)

    # ---- lifecycle -----------------------------------------------------------------------------
    def run(self) -> int:
        """Show the icon and run the UI loop on this (the main) thread until Quit."""
        backend.hide_dock_icon()
        icon = self.icon or self.create_icon()
        try:
            icon.run(setup=self._setup)
        finally:
            self.stop_background()
        return 0

    def _setup(self, icon: Any) -> None:
        backend.wait_for_loop_thread(icon)
        icon.visible = True
        self.start_background()

    def start_background(self) -> None:
        """Start following the daemon's events; launch a daemon first if none answers."""
        if self._follower is None:
            self._follower = EventFollower(self._client_factory, self.on_event, self.on_down)
            self._follower.start()
        # The login-item probe may run systemctl/launchctl: off the UI thread, the item greyed until then.
        self.submit(self.read_autostart)
        if self._start_daemon:
            self.submit(self.ensure_daemon)

    def read_autostart(self) -> None:
        enabled = self._login.is_enabled()
        self.update(lambda s: with_autostart(s, enabled))

    def stop_background(self) -> None:
        if self._follower is not None:
            self._follower.stop()

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run slow work (HTTP calls, launching) off the UI thread; errors become notifications.

        One daemon thread per click, not a pool: a stop that takes minutes must not keep the
        process alive after Quit (pool threads are joined at interpreter exit).
        """
        future: Future = Future()

        def guarded() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn(*args))
                return
            except QwendeskError as exc:
                self.notify(Notice("qwendesk", exc.message))
            except Exception as exc:
                log.exception("tray action failed")
                self.notify(Notice("qwendesk", f"Something went wrong: {exc}. See the tray log."))
            future.set_result(None)

        with self._lock:
            self._futures = [f for f in self._futures if not f.done()] + [future]
        threading.Thread(target=guarded, name="qwendesk-tray-worker", daemon=True).start()
        return future

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait for every click submitted so far (tests, and an orderly quit)."""
        with self._lock:
            pending = list(self._futures)
        wait(pending, timeout=timeout)

    # ---- the daemon ----------------------------------------------------------------------------
    def ensure_daemon(self) -> bool:
        """True once a daemon answers; starts one in the background (detached) if none does."""
        if self.client.is_running():
            return True
        with self._launch_lock:
            if self.client.is_running():
                return True
            self._launching = True
            self.update(daemon_starting)
            log_path = Path(self.settings.log_dir) / launcher.DAEMON_LOG
            try:
                process = None
                if not self._login.daemon_managed():  # systemd runs it: do not start a second one
                    process = self._child = self._launch(self.settings)
                launcher.wait_until_healthy(
                    self.client, process, log_path=log_path, timeout=self._health_timeout
                )
            except QwendeskError as exc:
                self._launching = False
                reason = exc.message
                self.update(lambda s: daemon_down(s, reason))
                self.notify(Notice("qwendesk could not start", reason))
                return False
            self._launching = False
        if self._follower is not None:
            self._follower.wake()
        return True

    # ---- clicks --------------------------------------------------------------------------------
    def on_action(self, action: str) -> Future:
        """A menu click: runs in a worker; returns the Future (tests wait on it)."""
        verb, name = parse_action(action)
        if name is not None:
            # Mark at once so the item is disabled before a second click lands. No refresh here: this
            # is the UI thread, pystray rebuilds the menu after the callback, and the worker refreshes
            # (a refresh from here could wait on a background refresh that waits on this thread).
            self.update(lambda s: with_pending(s, name, verb), refresh=False)
        return self.submit(self._perform_and_refresh, action)

    def _perform_and_refresh(self, action: str) -> None:
        self.refresh()
        self.perform(action)

    def perform(self, action: str) -> None:
        verb, name = parse_action(action)
        if name is not None:
            self._start_or_stop(verb, name)
        elif verb == OPEN_CHAT:
            if self.ensure_daemon():
                launcher.open_url(launcher.chat_url(self.settings), self._browser)
        elif verb == OPEN_MODELS_FOLDER:
            self._folder_opener(self.settings.model_folders[0])
        elif verb == OPEN_DOCUMENTS_FOLDER:
            self._folder_opener(self.settings.documents_dir)
        elif verb == START_DAEMON:
            self.ensure_daemon()
        elif verb == TOGGLE_AUTOSTART:
            enabled = self._login.set_enabled(not self.state.autostart)
            self.update(lambda s: with_autostart(s, enabled))
        elif verb == QUIT:
            self.quit()
        elif verb == QUIT_ALL:
            self.quit(stop_daemon=True)
        else:
            log.warning("unknown tray action %r", action)

    def _start_or_stop(self, verb: str, name: str) -> None:
        try:
            view = self.client.start(name, wait=False) if verb == "start" else self.client.stop(name)
            if isinstance(view, dict) and view.get("name") == name and view.get("state"):
                # Applying the answer closes the gap between "request done" and the event arriving.
                self.update(lambda s: apply_event(s, "model", view))
        except QwendeskError as exc:
            self.notify(Notice(f"Could not {verb} {name}", exc.message))
        finally:
            self.update(lambda s: with_pending(s, name, None))

    def quit(self, *, stop_daemon: bool = False) -> None:
        """Leave the tray; with stop_daemon, also stop the daemon, Xinference and every model."""
        if stop_daemon and self.state.daemon == DaemonPhase.UP:
            try:
                self.client.shutdown()
            except QwendeskError as exc:
                log.warning("shutdown failed: %s", exc.message)
        if self._follower is not None:
            self._follower.stop()
        if self.icon is not None:
            self._ui_call(self.icon.stop)  # AppKit wants this on the main thread
