"""The event follower: delivers events, reports the daemon going away, reconnects when it returns."""

from __future__ import annotations

import threading
import time
from typing import Any

from qwendesk.daemon.errors import Unauthorized
from qwendesk.tray.follower import EventFollower

from .fakes import FakeClient


def run_until(follower: EventFollower, done: threading.Event) -> None:
    follower.start()
    assert done.wait(10)
    follower.stop()
    follower.join(5)
    assert not follower.is_alive()


def test_events_then_loss_then_reconnect() -> None:
    client = FakeClient()
    client.streams = [
        [("snapshot", {"models": [], "status": {}}), ("model", {"name": "a"})],
        [],  # the stream ends at once (daemon going away), then it is back
        [("snapshot", {"models": [{"name": "a"}], "status": {}})],
    ]
    seen: list[Any] = []
    done = threading.Event()

    def on_event(event: str, data: Any) -> None:
        seen.append(event)
        if len([e for e in seen if e == "snapshot"]) == 2:
            done.set()

    def on_down(reason: str | None) -> None:
        seen.append(("down", reason))

    run_until(EventFollower(lambda: client, on_event, on_down, min_delay=0.01, max_delay=0.02), done)
    assert seen[:3] == ["snapshot", "model", ("down", None)]
    second = [i for i, e in enumerate(seen) if e == "snapshot"][1]
    assert ("down", None) in seen[2:second]  # lost, then back: the second snapshot came after the loss


def test_refusal_with_a_reason_is_reported() -> None:
    client = FakeClient()
    client.streams = [Unauthorized("Wrong token: set QWENDESK_TOKEN.")]
    reasons: list[str | None] = []
    done = threading.Event()

    def on_down(reason: str | None) -> None:
        reasons.append(reason)
        done.set()

    run_until(EventFollower(lambda: client, lambda e, d: None, on_down, min_delay=0.01), done)
    assert reasons[0] == "Wrong token: set QWENDESK_TOKEN."


def test_wake_skips_the_back_off() -> None:
    client = FakeClient()
    downs: list[float] = []
    follower = EventFollower(
        lambda: client,
        lambda e, d: None,
        lambda r: downs.append(time.monotonic()),
        min_delay=30,
        max_delay=30,
    )
    follower.start()
    deadline = time.monotonic() + 5
    while not downs and time.monotonic() < deadline:
        time.sleep(0.01)
    follower.wake()
    while len(downs) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    follower.stop()
    follower.join(5)
    assert len(downs) >= 2  # the second attempt came long before the 30 s back-off
