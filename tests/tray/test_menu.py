"""The menu is a pure function of the daemon's state: checked over many states."""

from __future__ import annotations

import pytest

from qwendesk.tray.menu import (
    OPEN_CHAT,
    OPEN_MODELS_FOLDER,
    QUIT,
    QUIT_ALL,
    START_DAEMON,
    TOGGLE_AUTOSTART,
    MenuItemSpec,
    build_menu_model,
    parse_action,
    shorten,
)
from qwendesk.tray.state import (
    DaemonPhase,
    TrayState,
    daemon_down,
    daemon_starting,
    with_autostart,
    with_pending,
)

from .helpers import connected, model


def texts(items: list[MenuItemSpec]) -> list[str]:
    return [i.text for i in items if not i.separator]


def item(items: list[MenuItemSpec], prefix: str) -> MenuItemSpec:
    matches = [i for i in items if i.text.startswith(prefix)]
    assert len(matches) == 1, (prefix, texts(items))
    return matches[0]


def by_action(items: list[MenuItemSpec], action: str) -> MenuItemSpec:
    return next(i for i in items if i.action == action)


def test_no_models_says_where_to_put_them() -> None:
    menu = build_menu_model(connected())
    hint = item(menu, "No models yet")
    assert not hint.enabled and hint.action is None
    assert "models folder" in hint.text
    assert [i.action for i in menu if i.action and ":" in i.action] == []


def test_status_line_shows_daemon_supervisor_and_accelerator() -> None:
    menu = build_menu_model(connected(supervisor_state="running", accelerator="metal"))
    first = menu[0]
    assert first.text == "Daemon: running · Xinference: running · Metal"
    assert not first.enabled
    assert not any(i.text.startswith("Remote:") for i in menu)


def test_status_line_shows_remote_endpoint_and_supervisor_error() -> None:
    state = connected(
        supervisor_state="failed", mode="remote", endpoint="http://gpu-box:9997", error="refused"
    )
    lines = texts(build_menu_model(state))
    assert "Daemon: running · Xinference: failed · CPU" in lines
    assert "Remote: http://gpu-box:9997" in lines
    assert "Xinference error: refused" in lines


def test_several_models_sorted_with_check_marks_and_actions() -> None:
    state = connected(model("zeta", "available"), model("Alpha", "running"), model("mid", "available"))
    menu = build_menu_model(state)
    models = [i for i in menu if i.action and ":" in i.action]
    assert [m.text for m in models] == ["Alpha", "mid", "zeta"]
    assert [m.checked for m in models] == [True, False, False]
    assert [m.action for m in models] == ["stop:Alpha", "start:mid", "start:zeta"]
    assert all(m.enabled for m in models)


@pytest.mark.parametrize(
    ("daemon_state", "text", "checked"),
    [("starting", "qwen — starting…", False), ("stopping", "qwen — stopping…", True)],
)
def test_busy_model_shows_it_and_cannot_be_clicked(daemon_state: str, text: str, checked: bool) -> None:
    menu = build_menu_model(connected(model("qwen", daemon_state)))
    entry = item(menu, "qwen")
    assert entry.text == text
    assert entry.checked is checked
    assert not entry.enabled
    assert entry.action is None


@pytest.mark.parametrize(("op", "text"), [("start", "qwen — starting…"), ("stop", "qwen — stopping…")])
def test_click_in_flight_disables_the_item_before_the_daemon_reports(op: str, text: str) -> None:
    before = "available" if op == "start" else "running"
    state = with_pending(connected(model("qwen", before)), "qwen", op)
    entry = item(build_menu_model(state), "qwen")
    assert entry.text == text and not entry.enabled and entry.action is None
    cleared = with_pending(state, "qwen", None)
    assert item(build_menu_model(cleared), "qwen").enabled


def test_error_model_shows_its_message_and_can_be_retried() -> None:
    state = connected(model("qwen", "error", error="Not enough memory: needs 6.1 GiB, 2.0 GiB free."))
    entry = item(build_menu_model(state), "qwen")
    assert entry.text == "qwen — error: Not enough memory: needs 6.1 GiB, 2.0 GiB free."
    assert entry.enabled and entry.action == "start:qwen" and entry.checked is False


def test_long_error_is_shortened_to_one_line() -> None:
    message = "llama.cpp failed:\n" + "x" * 500
    entry = item(build_menu_model(connected(model("qwen", "error", error=message))), "qwen")
    assert "\n" not in entry.text
    assert len(entry.text) <= 90 and entry.text.endswith("…")


def test_unknown_model_state_is_shown_not_guessed() -> None:
    entry = item(build_menu_model(connected(model("qwen", "downloading"))), "qwen")
    assert entry.text == "qwen — downloading" and not entry.enabled


def test_daemon_down_offers_to_start_it_and_hides_models() -> None:
    state = daemon_down(connected(model("qwen", "running")))
    menu = build_menu_model(state)
    assert menu[0].text == "qwendesk is not running"
    assert by_action(menu, START_DAEMON).enabled
    assert not any(i.action and ":" in i.action for i in menu)
    assert by_action(menu, OPEN_CHAT).enabled  # opening the chat starts the daemon
    assert by_action(menu, OPEN_MODELS_FOLDER).enabled
    assert not by_action(menu, QUIT_ALL).enabled  # nothing to stop
    assert by_action(menu, QUIT).enabled


def test_daemon_down_with_a_reason_shows_it() -> None:
    state = daemon_down(
        TrayState(), "The qwendesk daemon exited at start (code 1). See /x/daemon.log for why."
    )
    assert "exited at start" in texts(build_menu_model(state))[1]


def test_daemon_starting_shows_progress() -> None:
    menu = build_menu_model(daemon_starting(TrayState()))
    assert menu[0].text == "Starting qwendesk…"
    assert not by_action(menu, OPEN_CHAT).enabled
    assert not any(i.action == START_DAEMON for i in menu)


def test_connecting_state_before_first_event() -> None:
    assert build_menu_model(TrayState())[0].text == "Connecting to qwendesk…"
    assert TrayState().daemon == DaemonPhase.CONNECTING


@pytest.mark.parametrize(
    ("enabled", "checked", "clickable"), [(True, True, True), (False, False, True), (None, False, False)]
)
def test_start_at_login_item(enabled: bool | None, checked: bool, clickable: bool) -> None:
    entry = by_action(build_menu_model(with_autostart(connected(), enabled)), TOGGLE_AUTOSTART)
    assert entry.text == "Start at Login"
    assert entry.checked is checked and entry.enabled is clickable


def test_fixed_items_are_always_there_in_order() -> None:
    for state in (TrayState(), connected(model("a")), daemon_down(TrayState()), daemon_starting(TrayState())):
        actions = [
            i.action
            for i in build_menu_model(state)
            if i.action in (OPEN_CHAT, OPEN_MODELS_FOLDER, TOGGLE_AUTOSTART, QUIT, QUIT_ALL)
        ]
        assert actions == [OPEN_CHAT, OPEN_MODELS_FOLDER, TOGGLE_AUTOSTART, QUIT, QUIT_ALL]


def test_open_chat_is_the_default_item() -> None:
    defaults = [i for i in build_menu_model(connected()) if i.default]
    assert [d.action for d in defaults] == [OPEN_CHAT]


def test_parse_action_and_shorten() -> None:
    assert parse_action("start:a:b") == ("start", "a:b")
    assert parse_action("stop:x") == ("stop", "x")
    assert parse_action(QUIT) == (QUIT, None)
    assert shorten("a  b\nc", 10) == "a b c"
    assert shorten("abcdefghijk", 5) == "abcd…"


def test_menu_is_pure() -> None:
    state = connected(model("a", "running"), model("b", "error", error="boom"))
    assert build_menu_model(state) == build_menu_model(state)
