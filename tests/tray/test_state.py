"""Folding daemon events into TrayState; icon state; notifications for new errors."""

from __future__ import annotations

from dataclasses import replace

from qwendesk.tray.state import (
    DaemonPhase,
    IconState,
    TrayState,
    apply_event,
    daemon_down,
    daemon_starting,
    icon_state,
    notices,
    title_text,
    with_pending,
)

from .helpers import connected, model, status


def test_snapshot_replaces_everything_and_marks_up() -> None:
    state = apply_event(
        daemon_down(TrayState(), "x"), "snapshot", {"models": [model("b"), model("a")], "status": status()}
    )
    assert state.daemon == DaemonPhase.UP and state.daemon_error is None
    assert [m["name"] for m in state.models] == ["a", "b"]
    assert state.status["supervisor"]["state"] == "stopped"


def test_model_event_upserts_one_model() -> None:
    state = connected(model("a"), model("b"))
    state = apply_event(state, "model", model("b", "starting"))
    state = apply_event(state, "model", model("c", "available"))
    assert [(m["name"], m["state"]) for m in state.models] == [
        ("a", "available"),
        ("b", "starting"),
        ("c", "available"),
    ]


def test_a_removed_model_goes_with_the_next_snapshot() -> None:
    state = apply_event(connected(model("a"), model("b")), "snapshot", {"models": [model("b")], "status": {}})
    assert [m["name"] for m in state.models] == ["b"]


def test_status_event_and_unknown_events() -> None:
    state = apply_event(connected(), "status", status("running"))
    assert state.status["supervisor"]["state"] == "running"
    assert apply_event(state, "ping", {}) is state
    assert apply_event(state, "model", "garbage") is state


def test_snapshot_keeps_clicks_in_flight() -> None:
    state = with_pending(connected(model("a")), "a", "start")
    state = apply_event(state, "snapshot", {"models": [model("a")], "status": status()})
    assert dict(state.pending) == {"a": "start"}


def test_daemon_down_forgets_models() -> None:
    state = daemon_down(connected(model("a", "running")), "gone")
    assert state.models == () and state.daemon == DaemonPhase.DOWN and state.daemon_error == "gone"


def test_icon_state_over_states() -> None:
    assert icon_state(TrayState()) == IconState.LOADING
    assert icon_state(daemon_starting(TrayState())) == IconState.LOADING
    assert icon_state(daemon_down(TrayState())) == IconState.OFFLINE
    assert icon_state(connected()) == IconState.IDLE
    assert icon_state(connected(model("a"))) == IconState.IDLE
    assert icon_state(connected(model("a", "running"), model("b"))) == IconState.RUNNING
    assert icon_state(connected(model("a", "running"), model("b", "starting"))) == IconState.LOADING
    assert icon_state(connected(model("a", "stopping"))) == IconState.LOADING
    assert icon_state(with_pending(connected(model("a")), "a", "start")) == IconState.LOADING
    assert icon_state(connected(model("a", "running"), model("b", "error", error="x"))) == IconState.ERROR
    assert icon_state(connected(supervisor_state="failed")) == IconState.ERROR
    assert icon_state(connected(supervisor_state="starting")) == IconState.LOADING


def test_notice_when_a_model_fails() -> None:
    old = connected(model("a", "starting"))
    new = apply_event(old, "model", model("a", "error", error="out of memory"))
    found = notices(old, new)
    assert [(n.title, n.message) for n in found] == [("a failed to start", "out of memory")]
    assert notices(new, apply_event(new, "model", model("a", "error", error="out of memory"))) == []


def test_no_notice_for_errors_that_predate_the_connection() -> None:
    old = TrayState()
    new = connected(model("a", "error", error="old failure"))
    assert notices(old, new) == []


def test_notice_when_xinference_fails() -> None:
    old = connected(supervisor_state="running")
    new = apply_event(old, "status", status("failed", error="xinference-local exited (code 1)"))
    assert [n.title for n in notices(old, new)] == ["Xinference failed"]


def test_title_text() -> None:
    assert title_text(daemon_down(TrayState())) == "qwendesk — daemon not running"
    assert title_text(TrayState()) == "qwendesk — starting…"
    assert title_text(connected(model("a"))) == "qwendesk — no model running"
    assert title_text(connected(model("a", "running"))) == "qwendesk — a running"
    assert title_text(connected(model("a", "starting"))) == "qwendesk — starting a…"
    assert title_text(replace(connected(model("a")), pending={"a": "start"})) == "qwendesk — starting a…"
    assert title_text(connected(model("a", "running"), model("b", "starting"))) == "qwendesk — a running"
    assert (
        title_text(connected(model("a", "running"), model("b", "running"))) == "qwendesk — 2 models running"
    )
