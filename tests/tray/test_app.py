"""TrayApp wiring with pystray's dummy backend and a scripted client (unit level; e2e is elsewhere)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import NotEnoughMemory
from qwendesk.tray.app import TrayApp
from qwendesk.tray.icons import icon_image
from qwendesk.tray.login import LoginItem
from qwendesk.tray.state import DaemonPhase, IconState

from .fakes import FakeClient
from .helpers import model, status
from .test_login import FakeAutostart


class FakeProcess:
    def __init__(self, code: int | None = None) -> None:
        self.code = code

    def poll(self) -> int | None:
        return self.code


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


def make_app(client: FakeClient, pystray: ModuleType, **kwargs: Any) -> TrayApp:
    settings = load_settings(env={"QWENDESK_PORT": "11999", "QWENDESK_HOME": os.environ["QWENDESK_HOME"]})
    kwargs.setdefault("login", LoginItem(settings, module=FakeAutostart()))
    app = TrayApp(settings, client_factory=lambda: client, template=False, **kwargs)
    app.create_icon(pystray)
    return app


def snapshot(app: TrayApp, *models: dict[str, Any]) -> None:
    app.on_event("snapshot", {"models": list(models), "status": status("running")})


def items(app: TrayApp) -> list[Any]:
    return list(app.icon.menu)


def find(app: TrayApp, prefix: str) -> Any:
    return next(i for i in items(app) if i.text.startswith(prefix))


def test_menu_follows_events(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    assert items(app)[0].text == "Connecting to qwendesk…"
    snapshot(app, model("qwen", "available"))
    assert find(app, "qwen").checked is False
    app.on_event("model", model("qwen", "running"))
    assert find(app, "qwen").checked is True
    assert app.icon.icon is icon_image(IconState.RUNNING, False)
    assert app.icon.title == "qwendesk — qwen running"
    app.on_down(None)
    assert items(app)[0].text == "qwendesk is not running"
    assert app.icon.icon is icon_image(IconState.OFFLINE, False)


def test_click_starts_without_blocking_and_cannot_be_doubled(
    client: FakeClient, pystray_dummy: ModuleType
) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app, model("qwen"))
    client.gate = threading.Event()  # the start request hangs until we let it go
    find(app, "qwen")(app.icon)  # the click returns at once
    entry = find(app, "qwen")
    assert entry.text == "qwen — starting…" and not entry.enabled
    client.gate.set()
    app.wait_idle()
    assert client.calls == [("start", "qwen")]
    assert find(app, "qwen").text == "qwen — starting…"  # the answer (state starting) is shown
    app.on_event("model", model("qwen", "running"))
    assert find(app, "qwen").checked is True and find(app, "qwen").enabled


def test_running_model_click_stops_it(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app, model("qwen", "running"))
    app.on_action("stop:qwen").result(5)
    assert client.calls == [("stop", "qwen")]
    assert find(app, "qwen").checked is False


def test_refused_start_notifies_and_clears(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app, model("big"))
    client.fail["start"] = NotEnoughMemory("big needs 9 GiB of memory; 3 GiB are free. Stop a model first.")
    app.on_action("start:big").result(5)
    assert [(n.title, n.message) for n in app.notified] == [
        ("Could not start big", "big needs 9 GiB of memory; 3 GiB are free. Stop a model first.")
    ]
    assert find(app, "big").enabled and find(app, "big").text == "big"


def test_model_failing_raises_a_notification(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app, model("qwen", "starting"))
    app.on_event("model", model("qwen", "error", error="llama.cpp: failed to load model"))
    assert [n.title for n in app.notified] == ["qwen failed to start"]
    assert find(app, "qwen").text == "qwen — error: llama.cpp: failed to load model"
    assert app.icon.icon is icon_image(IconState.ERROR, False)


def test_open_chat_when_running(client: FakeClient, pystray_dummy: ModuleType) -> None:
    opened: list[str] = []
    app = make_app(client, pystray_dummy, browser=lambda url: opened.append(url) or True)
    snapshot(app)
    app.on_action("open_chat").result(5)
    assert opened == ["http://127.0.0.1:11999/"]


def test_open_chat_starts_the_daemon_first(client: FakeClient, pystray_dummy: ModuleType) -> None:
    client.running = False
    opened: list[str] = []
    phases: list[DaemonPhase] = []

    def launch(settings: Any) -> FakeProcess:
        phases.append(app.state.daemon)
        client.running = True  # the daemon comes up
        return FakeProcess()

    app = make_app(client, pystray_dummy, browser=lambda url: opened.append(url) or True, launch=launch)
    app.on_down(None)
    app.on_action("open_chat").result(5)
    assert phases == [DaemonPhase.STARTING]
    assert opened == ["http://127.0.0.1:11999/"]


def test_daemon_that_dies_at_start_is_reported(client: FakeClient, pystray_dummy: ModuleType) -> None:
    client.running = False
    app = make_app(client, pystray_dummy, launch=lambda settings: FakeProcess(code=2))
    assert app.ensure_daemon() is False
    assert app.state.daemon == DaemonPhase.DOWN
    assert "exited at start (code 2)" in items(app)[1].text
    assert app.notified[-1].title == "qwendesk could not start"


def test_follower_loss_during_launch_keeps_starting(client: FakeClient, pystray_dummy: ModuleType) -> None:
    client.running = False

    def launch(settings: Any) -> FakeProcess:
        app.on_down(None)  # the event follower notices nothing answers yet
        assert app.state.daemon == DaemonPhase.STARTING
        client.running = True
        return FakeProcess()

    app = make_app(client, pystray_dummy, launch=launch)
    assert app.ensure_daemon() is True


def test_open_models_folder(client: FakeClient, pystray_dummy: ModuleType) -> None:
    opened: list[Path] = []
    app = make_app(client, pystray_dummy, folder_opener=opened.append)
    app.on_action("open_models_folder").result(5)
    assert opened == [app.settings.model_folders[0]]


def test_start_at_login_toggles(client: FakeClient, pystray_dummy: ModuleType) -> None:
    fake = FakeAutostart()
    app = make_app(client, pystray_dummy, login=LoginItem(load_settings(), module=fake))
    assert not find(app, "Start at Login").enabled  # greyed until the (slow) probe has answered
    app.read_autostart()
    assert find(app, "Start at Login").checked is False and find(app, "Start at Login").enabled
    app.on_action("toggle_autostart").result(5)
    assert find(app, "Start at Login").checked is True and fake.installed
    app.on_action("toggle_autostart").result(5)
    assert find(app, "Start at Login").checked is False and not fake.installed


def test_quit_all_shuts_the_daemon_down(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app)
    find(app, "Quit and Stop")(app.icon)
    app.wait_idle()
    assert ("shutdown", None) in client.calls


def test_plain_quit_leaves_the_daemon_running(client: FakeClient, pystray_dummy: ModuleType) -> None:
    app = make_app(client, pystray_dummy)
    snapshot(app)
    app.on_action("quit").result(5)
    assert client.calls == []
