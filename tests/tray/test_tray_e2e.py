"""The tray against a real daemon (real uvicorn, Xinference, llama.cpp), with pystray's dummy backend.

The menu items are pystray's own MenuItem objects built from the live event stream; clicking one
is calling it, as a backend does on a real click.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qwendesk.daemon.client import DaemonClient
from qwendesk.daemon.config import load_settings
from qwendesk.tray import launcher
from qwendesk.tray.app import TrayApp
from qwendesk.tray.login import LoginItem
from qwendesk.tray.state import DaemonPhase
from tests.conftest import SMOLLM2_FILE, SMOLLM2_NAME, DaemonProcess, free_port

from .test_login import FakeAutostart

pytestmark = pytest.mark.e2e


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


def menu_item(app: TrayApp, prefix: str) -> Any:
    return next((i for i in app.icon.menu if i.text.startswith(prefix)), None)


def menu_texts(app: TrayApp) -> list[str]:
    return [i.text for i in app.icon.menu]


@pytest.fixture
def tray_for(pystray_dummy: ModuleType) -> Iterator[Callable[..., TrayApp]]:
    """Build a TrayApp on the dummy backend; stops its threads afterwards."""
    apps: list[TrayApp] = []

    def make(settings: Any, **kwargs: Any) -> TrayApp:
        kwargs.setdefault(
            "login", LoginItem(settings, module=FakeAutostart())
        )  # never touch the real login items
        app = TrayApp(settings, template=False, **kwargs)
        app.create_icon(pystray_dummy)
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.stop_background()


def test_start_stop_and_open_chat_from_the_menu(
    daemon: DaemonProcess, tray_for: Callable[..., TrayApp]
) -> None:
    opened: list[str] = []
    daemon.client.stop(SMOLLM2_NAME)  # the session daemon is shared: other tests may have started it
    app = tray_for(daemon.settings, browser=lambda url: opened.append(url) or True)
    app.start_background()

    # The live menu lists the SmolLM2 file the daemon found, unchecked, with the daemon's status line.
    item = wait_until(lambda: menu_item(app, SMOLLM2_NAME), 30, "the SmolLM2 item in the menu")
    assert daemon.model(SMOLLM2_NAME)["file"].endswith(SMOLLM2_FILE)
    assert item.checked is False and item.enabled
    assert menu_texts(app)[0].startswith("Daemon: running · Xinference: ")

    item(app.icon)  # click "start"
    # At once: the item is busy and cannot be clicked twice.
    busy = menu_item(app, SMOLLM2_NAME)
    assert busy.text == f"{SMOLLM2_NAME} — starting…" and not busy.enabled
    daemon.wait_for(lambda c: c.model(SMOLLM2_NAME)["state"] == "running", 300, "the daemon to run SmolLM2")
    wait_until(lambda: menu_item(app, SMOLLM2_NAME).checked is True, 5, "the check mark")
    assert menu_item(app, SMOLLM2_NAME).enabled
    assert "running" in app.icon.title

    menu_item(app, SMOLLM2_NAME)(app.icon)  # click "stop"
    daemon.wait_for(
        lambda c: c.model(SMOLLM2_NAME)["state"] == "available", 120, "the daemon to stop SmolLM2"
    )
    wait_until(lambda: menu_item(app, SMOLLM2_NAME).checked is False, 5, "the check mark to go")
    assert menu_item(app, SMOLLM2_NAME).enabled

    menu_item(app, "Open Chat")(app.icon)
    wait_until(lambda: opened, 10, "the browser opener")
    assert opened == [daemon.url + "/"]
    assert app.notified == []


def test_indexing_shows_in_the_title_and_the_documents_folder_opens(
    daemon: DaemonProcess,
    tray_for: Callable[..., TrayApp],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A folder added as a collection: the real daemon's `indexing` events reach the title, which settles
    once the collection is indexed; Open Documents Folder opens the default collection's folder."""
    opened: list[Path] = []
    app = tray_for(daemon.settings, folder_opener=lambda path: opened.append(path))
    titles: list[str] = []  # every title the tray pushed to the icon
    shown = app._title
    monkeypatch.setattr(app, "_title", lambda state: titles.append(shown(state)) or titles[-1])
    app.start_background()
    wait_until(lambda: menu_item(app, SMOLLM2_NAME), 30, "the menu")

    folder = tmp_path / "handbook"
    folder.mkdir()
    for i in range(400):  # enough files for the sync to report progress while the tray watches
        (folder / f"page-{i:03}.md").write_text(
            f"# Page {i}\n\nThe handbook page number {i} about topic {i % 7}.\n"
        )
    daemon.client.add_collection(str(folder), "handbook")
    try:

        def indexed(_client: DaemonClient) -> bool:
            found = [c for c in daemon.client.collections()["collections"] if c["name"] == "handbook"]
            return bool(found) and found[0]["files"] == 400 and found[0]["state"] == "ready"

        daemon.wait_for(indexed, 300, "the handbook collection to be indexed")
        assert any("indexing handbook" in t for t in titles), titles[-5:]
        wait_until(lambda: "indexing" not in app.icon.title, 10, "the title to settle")
        assert not any("Documents:" in text for text in menu_texts(app))
    finally:
        daemon.client.remove_collection("handbook")

    menu_item(app, "Open Documents Folder")(app.icon)
    wait_until(lambda: opened, 10, "the folder opener")
    documents = Path(daemon.client.collections()["documents_folder"])
    assert opened == [daemon.settings.documents_dir] and opened[0] == documents


def test_menu_follows_changes_made_elsewhere(daemon: DaemonProcess, tray_for: Callable[..., TrayApp]) -> None:
    """A model started and stopped through the API (as the CLI does) shows in the menu promptly (events, not polling)."""
    app = tray_for(daemon.settings)
    app.start_background()
    wait_until(lambda: menu_item(app, SMOLLM2_NAME), 30, "the SmolLM2 item")
    with DaemonClient.from_settings(daemon.settings, timeout=300) as cli:
        cli.start(SMOLLM2_NAME, wait=True)
        wait_until(lambda: menu_item(app, SMOLLM2_NAME).checked is True, 5, "the check mark")
        cli.stop(SMOLLM2_NAME)
        wait_until(lambda: menu_item(app, SMOLLM2_NAME).checked is False, 5, "the check mark to go")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def test_tray_starts_the_daemon_follows_it_away_and_back_and_quits_it(
    tmp_path: Path, tray_for: Callable[..., TrayApp]
) -> None:
    home = tmp_path / "home"
    port = free_port()
    settings = load_settings({"home": str(home), "port": port}, env={})
    client = DaemonClient.from_settings(settings, timeout=10)
    assert not client.is_running()
    app = tray_for(settings)
    launched: list[int] = []
    second: DaemonProcess | None = None
    try:
        app.start_background()  # no daemon: the tray starts one, detached, logging to the log folder
        wait_until(lambda: app.state.daemon == DaemonPhase.STARTING or client.is_running(), 30, "Starting…")
        wait_until(lambda: app.state.daemon == DaemonPhase.UP, 90, "the launched daemon to be followed")
        assert app._child is not None
        launched.append(app._child.pid)
        assert os.getsid(app._child.pid) == app._child.pid  # its own session: it outlives the tray
        # Its console output goes to the log folder, next to the daemon's own log.
        assert "started by qwendesk tray" in (settings.log_dir / launcher.DAEMON_LOG).read_text()
        assert (settings.log_dir / "daemon.log").stat().st_size > 0
        assert menu_texts(app)[0].startswith("Daemon: running")
        assert any(t.startswith("No models yet") for t in menu_texts(app))

        # The daemon goes away (killed from outside): the tray says so.
        os.kill(app._child.pid, signal.SIGTERM)
        wait_until(lambda: app.state.daemon == DaemonPhase.DOWN, 30, "the tray to notice the daemon is gone")
        assert menu_texts(app)[0] == "qwendesk is not running"
        assert menu_item(app, "Start qwendesk").enabled

        # It comes back (started by someone else): the tray reconnects on its own.
        second = DaemonProcess(home, port).start()
        wait_until(lambda: app.state.daemon == DaemonPhase.UP, 10, "the tray to reconnect")
        assert menu_texts(app)[0].startswith("Daemon: running")

        # "Quit and Stop": the daemon shuts down.
        menu_item(app, "Quit and Stop")(app.icon)
        wait_until(lambda: second.proc.poll() is not None, 60, "the daemon to exit")
        assert not client.is_running()
    finally:
        client.close()
        if second is not None:
            second.stop()
        for pid in launched:
            _kill_group(pid)
