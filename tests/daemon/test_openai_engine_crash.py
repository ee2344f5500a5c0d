"""A model process killed mid-answer: the client gets an error (no hang), the model shows why, the next
request starts it again. The real daemon, Xinference and llama.cpp; the kill is `kill -9`."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess

pytestmark = pytest.mark.e2e

LONG = {
    "model": SMOLLM2_NAME,
    "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    "max_tokens": 3000,
    "ignore_eos": True,
    "stream": True,
}
HI = {"model": SMOLLM2_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
ENDS_WITHIN = 15.0  # s from the kill to the end of the client's stream: far less than 3000 tokens take


def fresh_engine(daemon: DaemonProcess):
    daemon.client.stop(SMOLLM2_NAME)  # the session daemon is shared: start from a known state
    daemon.client.start(SMOLLM2_NAME)
    ((proc, port),) = daemon.engines()
    return proc, port


def test_killed_engine_mid_stream_ends_the_stream_with_an_error_then_relaunches(
    daemon: DaemonProcess,
) -> None:
    proc, port = fresh_engine(daemon)
    events: list[str] = []
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=LONG, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(line)
            if len(events) == 5:
                proc.kill()  # SIGKILL: no goodbye from the engine
                killed = time.monotonic()
                break
        events += [line for line in lines if line.startswith("data: ")]
        ended = time.monotonic()
    assert ended - killed < ENDS_WITHIN, "the client's stream must end soon after the engine died"
    last = json.loads(events[-1].removeprefix("data: "))
    assert "error" in last, events[-3:]
    assert last["error"]["code"] == "engine_error" and last["error"]["type"] == "server_error"
    assert "[DONE]" not in events[-1]

    model = daemon.model(SMOLLM2_NAME)
    assert model["state"] == "error", model
    assert "stopped unexpectedly" in model["error"] and "next request starts it again" in model["error"]
    listed = httpx.get(f"{daemon.url}/v1/models/{SMOLLM2_NAME}", timeout=30).json()
    assert listed["state"] == "error" and listed["error"] == model["error"]

    r = httpx.post(daemon.url + "/v1/chat/completions", json=HI, timeout=300)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]
    assert daemon.model(SMOLLM2_NAME)["state"] == "running"
    ((new_proc, new_port),) = daemon.engines()  # one engine: the dead one's Xinference entry was dropped
    assert new_proc.pid != proc.pid


def test_killed_engine_before_a_request_is_a_clear_502_then_relaunches(daemon: DaemonProcess) -> None:
    proc, _port = fresh_engine(daemon)
    proc.kill()
    proc.wait(10)
    # Right after the kill nothing listens (Xinference's actor pool would bring the process back in ~1.5 s).
    r = httpx.post(daemon.url + "/v1/chat/completions", json=HI, timeout=300)
    assert r.status_code == 502, r.text
    error = r.json()["error"]
    assert (
        error["code"] == "engine_error"
        and "ConnectError" in error["message"]
        and "Try again" in error["message"]
    )
    assert daemon.model(SMOLLM2_NAME)["state"] == "error"
    r = httpx.post(daemon.url + "/v1/chat/completions", json=HI, timeout=300)
    assert r.status_code == 200, r.text
    assert daemon.model(SMOLLM2_NAME)["state"] == "running"
