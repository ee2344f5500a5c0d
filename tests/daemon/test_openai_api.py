"""The /v1 API of a real daemon: wire format, model ids, on-demand start, errors, security."""

from __future__ import annotations

import json
import re
import subprocess

import httpx
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model

pytestmark = pytest.mark.e2e

HELLO = [{"role": "user", "content": "Say hello."}]


def post(daemon: DaemonProcess, path: str, body: dict, **kw) -> httpx.Response:
    return httpx.post(daemon.url + path, json=body, timeout=300, **kw)


def sse_events(raw: bytes) -> list[bytes]:
    """Split an event stream exactly as the wire carries it; every event must be one `data:` line."""
    assert raw.endswith(b"\n\n"), raw[-200:]
    events = raw[:-2].split(b"\n\n")
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event, event[:200]
    return [e[len(b"data: ") :] for e in events]


def assert_openai_error(r: httpx.Response, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error, dict) and {"message", "type", "code"} <= set(error), error
    for word in words:
        assert word.lower() in error["message"].lower(), error["message"]
    return error


# ---- the real daemon ---------------------------------------------------------------------------------
def test_models_lists_every_model_with_its_state(daemon: DaemonProcess) -> None:
    daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="SmolLM2 to be listed")
    r = httpx.get(daemon.url + "/v1/models", timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    ids = {m["id"]: m for m in body["data"]}
    assert ids[SMOLLM2_NAME]["object"] == "model"
    assert ids[SMOLLM2_NAME]["state"] in ("available", "starting", "running")
    one = httpx.get(f"{daemon.url}/v1/models/{SMOLLM2_NAME}", timeout=30).json()
    assert one["id"] == SMOLLM2_NAME


def test_unknown_model_and_bad_bodies_get_openai_errors(daemon: DaemonProcess) -> None:
    assert_openai_error(
        post(daemon, "/v1/chat/completions", {"model": "nope", "messages": HELLO}), 404, "nope"
    )
    assert_openai_error(post(daemon, "/v1/chat/completions", {"messages": HELLO}), 400, "model")
    bad = httpx.post(daemon.url + "/v1/chat/completions", content=b"{not json", timeout=30)
    assert_openai_error(bad, 400, "json")


def test_requests_openai_refuses_get_its_400_before_a_model_starts(daemon: DaemonProcess) -> None:
    daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="SmolLM2 to be listed")
    if daemon.model(SMOLLM2_NAME)["state"] == "running":
        daemon.client.stop(SMOLLM2_NAME)
    cases = {
        "messages": {"messages": []},
        "messages[0].role": {"messages": [{"role": "wizard", "content": "hi"}]},
        "messages[0].content": {"messages": [{"role": "user", "content": 7}]},
        "temperature": {"messages": HELLO, "temperature": 2.5},
        "max_tokens": {"messages": HELLO, "max_tokens": 0},
        "stop": {"messages": HELLO, "stop": ["a", "b", "c", "d", "e"]},
        "stream": {"messages": HELLO, "stream": "yes"},
    }
    for param, change in cases.items():
        r = post(daemon, "/v1/chat/completions", {"model": SMOLLM2_NAME, **change})
        error = assert_openai_error(r, 400, param)
        assert error["param"] == param and error["type"] == "invalid_request_error", error
    r = post(daemon, "/v1/embeddings", {"model": SMOLLM2_NAME, "input": []})
    assert assert_openai_error(r, 400, "input")["param"] == "input"
    assert daemon.model(SMOLLM2_NAME)["state"] == "available"  # refused before anything started


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
@pytest.mark.parametrize("stream", [False, True])
def test_context_overflow_is_context_length_exceeded(daemon: DaemonProcess, path: str, stream: bool) -> None:
    daemon.client.start(SMOLLM2_NAME)
    n_ctx = daemon.model(SMOLLM2_NAME)["n_ctx"]
    text = "hello " * (n_ctx + 500)  # a token a word: over the context whatever the template adds
    body = {"model": SMOLLM2_NAME, "max_tokens": 4, "stream": stream}
    body |= {"messages": [{"role": "user", "content": text}]} if "chat" in path else {"prompt": text}
    r = post(daemon, path, body)  # a stream that overflows must answer at once, never hang
    error = assert_openai_error(r, 400, "context", "--n-ctx")
    assert error["code"] == "context_length_exceeded" and error["type"] == "invalid_request_error"
    assert r.headers["content-type"].startswith("application/json")
    ok = post(daemon, path, {**body, **({"messages": HELLO} if "chat" in path else {"prompt": "Hi"})})
    assert ok.status_code == 200, ok.text  # the engine is fine afterwards


def test_stopped_model_starts_on_demand_and_answers_non_streaming(daemon: DaemonProcess) -> None:
    daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="SmolLM2 to be listed")
    if daemon.model(SMOLLM2_NAME)["state"] == "running":
        daemon.client.stop(SMOLLM2_NAME)
    assert daemon.model(SMOLLM2_NAME)["state"] == "available"
    r = post(daemon, "/v1/chat/completions", {"model": SMOLLM2_NAME, "messages": HELLO, "max_tokens": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == SMOLLM2_NAME  # not the GGUF path the engine reports
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    assert body["usage"]["completion_tokens"] <= 8
    assert daemon.model(SMOLLM2_NAME)["state"] == "running"


def test_file_name_works_as_model_id(daemon: DaemonProcess) -> None:
    file_name = daemon.model(SMOLLM2_NAME)["file"].rsplit("/", 1)[-1]
    assert file_name.endswith(".gguf")
    r = post(daemon, "/v1/chat/completions", {"model": file_name, "messages": HELLO, "max_tokens": 4})
    assert r.status_code == 200, r.text
    assert r.json()["model"] == SMOLLM2_NAME


def test_streaming_follows_the_openai_wire_format_with_usage(daemon: DaemonProcess) -> None:
    body = {
        "model": SMOLLM2_NAME,
        "messages": HELLO,
        "max_tokens": 12,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=body, timeout=300) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = r.read()
    events = sse_events(raw)
    assert events[-1] == b"[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["model"] == SMOLLM2_NAME for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text
    assert [c for c in chunks if c["choices"]][-1]["choices"][0]["finish_reason"] in ("length", "stop")
    usage = [c for c in chunks if c.get("usage")]
    assert usage and usage[-1]["choices"] == []
    assert 0 < usage[-1]["usage"]["completion_tokens"] <= 12


def test_stream_without_include_usage_has_no_usage_chunk(daemon: DaemonProcess) -> None:
    body = {"model": SMOLLM2_NAME, "messages": HELLO, "max_tokens": 4, "stream": True}
    with httpx.stream("POST", daemon.url + "/v1/chat/completions", json=body, timeout=300) as r:
        chunks = [json.loads(e) for e in sse_events(r.read())[:-1]]
    assert not any(c["choices"] == [] for c in chunks)


def test_completions_and_response_format(daemon: DaemonProcess) -> None:
    r = post(daemon, "/v1/completions", {"model": SMOLLM2_NAME, "prompt": "The sky is", "max_tokens": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == SMOLLM2_NAME
    assert body["choices"][0]["text"]

    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    fmt = {"type": "json_schema", "json_schema": {"name": "place", "schema": schema}}
    msgs = [{"role": "user", "content": "Name a city in France as JSON."}]
    r = post(
        daemon,
        "/v1/chat/completions",
        {"model": SMOLLM2_NAME, "messages": msgs, "response_format": fmt, "max_tokens": 40, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    assert isinstance(json.loads(r.json()["choices"][0]["message"]["content"])["city"], str)


def test_tools_are_accepted_for_any_model(daemon: DaemonProcess) -> None:
    """Xinference's API answers 400 to tools for non-tool families; llama.cpp itself takes them.

    Whether SmolLM2 then calls the tool is its own business: test_openai_parity shows the answer equals
    the engine's own answer for the same request.
    """
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    body = {"model": SMOLLM2_NAME, "messages": msgs, "tools": [tool], "max_tokens": 8, "temperature": 0}
    r = post(daemon, "/v1/chat/completions", body)
    assert r.status_code == 200, r.text
    message = r.json()["choices"][0]["message"]
    assert message.get("content") or message.get("tool_calls")


def test_embeddings_of_a_chat_model_is_a_clear_error(daemon: DaemonProcess) -> None:
    r = post(daemon, "/v1/embeddings", {"model": SMOLLM2_NAME, "input": "hello"})
    assert_openai_error(r, 400, "embeddings")


def test_curl_streams_from_the_daemon(daemon: DaemonProcess) -> None:
    body = json.dumps({"model": SMOLLM2_NAME, "messages": HELLO, "max_tokens": 6, "stream": True})
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-N",
            "-H",
            "Content-Type: application/json",
            "-d",
            body,
            daemon.url + "/v1/chat/completions",
        ],
        capture_output=True,
        timeout=300,
        check=True,
    ).stdout
    events = sse_events(out)
    assert events[-1] == b"[DONE]" and len(events) >= 3
    non_stream = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            "Content-Type: application/json",
            "-d",
            body.replace("true", "false"),
            daemon.url + "/v1/chat/completions",
        ],
        capture_output=True,
        timeout=300,
        check=True,
    ).stdout
    assert json.loads(non_stream)["choices"][0]["message"]["content"]


# ---- a second daemon: auto-start off, a broken file, a token ------------------------------------------
@pytest.fixture(scope="module")
def strict_daemon(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf):
    home = tmp_path_factory.mktemp("strict-home")
    proc = DaemonProcess(
        home, free_port(), {"QWENDESK_AUTO_START": "false", "QWENDESK_TOKEN": "s3cret-token"}
    )
    link_model(smollm2_gguf, proc.models_dir)
    (proc.models_dir / "broken.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    proc.client = type(proc.client)(proc.url, "s3cret-token", timeout=120)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_auto_start_off_and_error_state_give_clear_conflicts(strict_daemon: DaemonProcess) -> None:
    auth = {"Authorization": "Bearer s3cret-token"}
    strict_daemon.wait_for(lambda c: len(c.models()) == 2, what="both files to be listed")
    broken = next(m for m in strict_daemon.client.models() if m["name"] != SMOLLM2_NAME)
    r = post(
        strict_daemon, "/v1/chat/completions", {"model": broken["name"], "messages": HELLO}, headers=auth
    )
    assert_openai_error(r, 409, broken["name"])
    r = post(strict_daemon, "/v1/chat/completions", {"model": SMOLLM2_NAME, "messages": HELLO}, headers=auth)
    assert_openai_error(r, 409, "not running", "start")
    assert strict_daemon.model(SMOLLM2_NAME)["state"] == "available"


def test_token_and_origin_guard_the_api_but_not_the_page(strict_daemon: DaemonProcess) -> None:
    url = strict_daemon.url
    assert_openai_error(httpx.get(url + "/v1/models", timeout=30), 401, "token")
    ok = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    assert ok.status_code == 200
    evil = {"Authorization": "Bearer s3cret-token", "Origin": "http://evil.example"}
    assert_openai_error(httpx.get(url + "/v1/models", headers=evil, timeout=30), 403, "origin")
    own = {"Authorization": "Bearer s3cret-token", "Origin": url}
    assert httpx.get(url + "/v1/models", headers=own, timeout=30).status_code == 200
    page = httpx.get(url + "/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", page.text), "the page must not load remote assets"
