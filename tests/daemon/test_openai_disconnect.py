"""A client that disconnects mid-stream stops the generation in llama.cpp itself, not only the HTTP response."""

from __future__ import annotations

import time

import httpx
import psutil
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess

pytestmark = pytest.mark.e2e

LONG = {
    "model": SMOLLM2_NAME,
    "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
    "max_tokens": 3000,
    "ignore_eos": True,  # llama.cpp option: keeps generating, so only a cancel can end it early
    "temperature": 0,
    "stream": True,
}


def engine_slots_url(daemon: DaemonProcess) -> str:
    """The /slots endpoint of the llama-server inside the model's process (found independently of the daemon)."""
    for proc in daemon.tree():
        try:
            if not proc.cmdline() or not proc.cmdline()[0].startswith(f"Model: {SMOLLM2_NAME}"):
                continue
            for conn in proc.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    url = f"http://127.0.0.1:{conn.laddr.port}/slots"
                    try:
                        if isinstance(httpx.get(url, timeout=2).json(), list):
                            return url
                    except (httpx.HTTPError, ValueError):
                        continue
        except psutil.Error:
            continue
    raise AssertionError("no llama-server found in the model process")


def slot(url: str) -> dict:
    return httpx.get(url, timeout=10).json()[0]


def decoded(s: dict) -> int:
    nt = s.get("next_token")
    nt = nt[0] if isinstance(nt, list) and nt else nt or {}
    return int(nt.get("n_decoded", 0))


def test_disconnect_mid_stream_stops_the_engine(daemon: DaemonProcess) -> None:
    daemon.client.start(SMOLLM2_NAME)
    url = engine_slots_url(daemon)
    assert not slot(url)["is_processing"]

    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=LONG, timeout=300) as r:
        assert r.status_code == 200
        got = 0
        for line in r.iter_lines():
            got += line.startswith("data: ")
            if got >= 20:
                break
        busy = slot(url)
        assert busy["is_processing"], "the engine should be generating while we read"
    # The client is gone: within a few seconds the slot must be idle, long before 3000 tokens.
    deadline = time.monotonic() + 10
    while slot(url)["is_processing"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = slot(url)
    assert not after["is_processing"], f"llama.cpp kept generating after the disconnect: {after}"
    stopped_at = decoded(busy)
    time.sleep(1.0)
    assert not slot(url)["is_processing"]
    assert stopped_at < 3000

    # The one slot is free again: a new request is answered at once, not after 3000 tokens.
    body = {"model": SMOLLM2_NAME, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}
    r = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text


def test_disconnect_while_waiting_for_a_non_streamed_answer_stops_the_engine(daemon: DaemonProcess) -> None:
    daemon.client.start(SMOLLM2_NAME)
    url = engine_slots_url(daemon)
    body = {**LONG, "stream": False}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=2.0))
    deadline = time.monotonic() + 10
    while slot(url)["is_processing"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not slot(url)["is_processing"], "a non-streamed generation kept running after the client left"
