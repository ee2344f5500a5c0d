"""A client that disconnects mid-stream stops the generation in llama.cpp itself, not only the HTTP response."""

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
    "ignore_eos": True,  # llama.cpp option: keeps generating, so only a cancel can end it early
    "temperature": 0,
    "stream": True,
}


def engine(daemon: DaemonProcess) -> tuple[str, dict[str, str]]:
    """The /slots endpoint and auth header of the llama-server inside the model's process.

    The daemon fixes that server's port and key at launch and records them in run/engines.json (0600);
    the server refuses requests without the key.
    """
    info = json.loads((daemon.settings.run_dir / "engines.json").read_text())[SMOLLM2_NAME]
    url = info["url"] + "/slots"
    assert httpx.get(url, timeout=10).status_code == 401, "the engine must refuse requests without its key"
    return url, {"Authorization": f"Bearer {info['key']}"}


def slot(target: tuple[str, dict[str, str]]) -> dict:
    url, headers = target
    return httpx.get(url, headers=headers, timeout=10).json()[0]


def decoded(s: dict) -> int:
    nt = s.get("next_token")
    nt = nt[0] if isinstance(nt, list) and nt else nt or {}
    return int(nt.get("n_decoded", 0))


def test_disconnect_mid_stream_stops_the_engine(daemon: DaemonProcess) -> None:
    daemon.client.start(SMOLLM2_NAME)
    url = engine(daemon)
    assert not slot(url)["is_processing"]

    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=LONG, timeout=300) as r:
        assert r.status_code == 200
        got = 0
        # Keep a reference: a dropped line iterator is closed at once, which would close the stream early.
        lines = r.iter_lines()
        for line in lines:
            got += line.startswith("data: ")
            if got >= 20:
                break
        busy = slot(url)
        assert busy["is_processing"], "the engine should be generating while we read"
    # The client is gone: within a few seconds the slot must be idle, long before 3000 tokens.
    deadline = time.monotonic() + 30  # far less than 3000 tokens take, even on a busy CI machine
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
    """llama-server notices the closed connection of a non-streamed request less promptly than a streamed one
    (under 1 s streamed; ~30 s seen on a busy CI machine), so it gets a generation far longer than that."""
    daemon.client.stop(SMOLLM2_NAME)
    daemon.client.start(SMOLLM2_NAME, n_ctx=16384)
    try:
        url = engine(daemon)
        body = {**LONG, "stream": False, "max_tokens": 16000}  # >= 2 minutes of decoding on this machine
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=httpx.Timeout(10, read=2.0))
        deadline = time.monotonic() + 90
        most = 0
        while (state := slot(url))["is_processing"]:
            most = max(most, decoded(state))
            assert time.monotonic() < deadline, (
                f"a non-streamed generation kept running after the client left: {state}"
            )
            time.sleep(0.5)
        assert most < 16000
    finally:
        daemon.client.stop(SMOLLM2_NAME)
