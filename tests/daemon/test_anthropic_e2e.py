"""Anthropic's Messages API through the unmodified anthropic SDK: llama.cpp's own answer passed through
(greedy parity with the engine itself), `messages.stream`, count_tokens, `x-api-key`, cancellation."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.daemon.routes.api_daemon import (
    CHAT,
    SLOW,
    ApiDaemon,
    assert_stops_after_disconnect,
    reference_for,
    shared_daemon,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def api_daemon(tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path, smollm2_gguf: Path):
    yield from shared_daemon(tmp_path_factory, qwen2_gguf, smollm2_gguf)


REQUEST = {
    "system": "Answer briefly.",
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 24,
    # This SDK has no sampling parameters; llama.cpp reads `temperature` (0: greedy) from the body.
    "extra_body": {"temperature": 0},
}
ENGINE_REQUEST = {k: v for k, v in REQUEST.items() if k != "extra_body"} | {"temperature": 0}


def sdk(api: ApiDaemon, key: str | None = None) -> anthropic.Anthropic:
    # The SDK authenticates with `x-api-key` (no Authorization header): the daemon's token is accepted there.
    return anthropic.Anthropic(base_url=api.url, api_key=key or api.token, timeout=300)


def test_messages_are_the_engines_own(api_daemon: ApiDaemon, qwen2_gguf: Path) -> None:
    ref = reference_for(api_daemon, CHAT, qwen2_gguf)
    theirs = httpx.post(ref.url + "/v1/messages", json={"model": "x", **ENGINE_REQUEST}, timeout=300).json()
    their_text = theirs["content"][0]["text"]
    client = sdk(api_daemon)

    ours = client.messages.create(model=CHAT, **REQUEST)
    assert ours.model == CHAT and ours.role == "assistant" and ours.content[0].type == "text"
    assert ours.content[0].text == their_text and their_text
    assert ours.stop_reason == theirs["stop_reason"]
    assert ours.usage.output_tokens == theirs["usage"]["output_tokens"]

    with client.messages.stream(model=CHAT, **REQUEST) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == their_text == final.content[0].text and final.model == CHAT

    count = client.messages.count_tokens(model=CHAT, system=REQUEST["system"], messages=REQUEST["messages"])
    their_count = httpx.post(
        ref.url + "/v1/messages/count_tokens",
        json={"model": "x", "system": REQUEST["system"], "messages": REQUEST["messages"]},
        timeout=60,
    ).json()
    assert count.input_tokens == their_count["input_tokens"] > 5


def test_x_api_key_is_the_token_on_v1_only(api_daemon: ApiDaemon) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        sdk(api_daemon, key="not-the-token").messages.create(model=CHAT, **REQUEST)
    control = httpx.get(api_daemon.url + "/api/status", headers={"x-api-key": api_daemon.token}, timeout=30)
    assert control.status_code == 401  # the control API keeps to the bearer token
    with pytest.raises(anthropic.NotFoundError, match="No model named"):
        sdk(api_daemon).messages.create(model="no-such-model", **REQUEST)


def test_leaving_a_streamed_message_stops_the_engine(api_daemon: ApiDaemon) -> None:
    api_daemon.proc.client.start(SLOW)
    body = {"model": SLOW, "max_tokens": 3000, "stream": True, "temperature": 0, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Tell a very long story."}]}  # fmt: skip

    @contextmanager
    def stream():
        headers = {"x-api-key": api_daemon.token, "anthropic-version": "2023-06-01"}
        with httpx.stream("POST", api_daemon.v1 + "/messages", json=body, headers=headers, timeout=300) as r:
            assert r.status_code == 200
            yield r.iter_lines()

    assert_stops_after_disconnect(api_daemon, stream)
