"""OpenAI's Responses API through the unmodified openai SDK: llama.cpp's own answer passed through (greedy
parity with the engine itself), streaming with the SDK's helpers, stored responses, cancellation."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
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


GREEDY = {"temperature": 0, "max_output_tokens": 24}


def sdk(api: ApiDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.v1, api_key=api.token, timeout=300)


def test_responses_are_the_engines_own(api_daemon: ApiDaemon, qwen2_gguf: Path) -> None:
    """Non-streamed and streamed, the text and token counts are what llama.cpp's /v1/responses gives for the
    same request; the SDK parses both; the model is named as qwendesk names it."""
    ref = reference_for(api_daemon, CHAT, qwen2_gguf)
    request = {"instructions": "Answer briefly.", "input": "What is the capital of France?", **GREEDY}
    theirs = httpx.post(ref.url + "/v1/responses", json={"model": "x", **request}, timeout=300).json()
    client = sdk(api_daemon)

    ours = client.responses.create(model=CHAT, **request)
    assert ours.model == CHAT and ours.status == "completed" and ours.id.startswith("resp_")
    their_text = theirs["output"][0]["content"][0]["text"]
    assert ours.output_text == their_text and their_text
    assert (ours.usage.input_tokens, ours.usage.output_tokens) == (
        theirs["usage"]["input_tokens"],
        theirs["usage"]["output_tokens"],
    )

    events = list(client.responses.create(model=CHAT, stream=True, **request))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))  # added by qwendesk
    deltas = [e for e in events if e.type == "response.output_text.delta"]
    assert all(e.output_index == 0 and e.content_index == 0 for e in deltas)
    assert "".join(e.delta for e in deltas) == their_text == events[-1].response.output_text
    assert events[-1].response.model == CHAT

    # The SDK's stream helper indexes its snapshot by output_index/content_index: it needs the fix-ups.
    with client.responses.stream(model=CHAT, **request) as stream:
        for _event in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == their_text and final.model == CHAT


def test_input_items_and_tool_results(api_daemon: ApiDaemon) -> None:
    """Input as items, with a function call and its output fed back, and the input-token count."""
    client = sdk(api_daemon)
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        }
    ]
    items = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city": "Paris"}',
        },
        {"type": "function_call_output", "call_id": "call_1", "output": "Sunny, 21 C"},
    ]
    r = client.responses.create(model=CHAT, input=items, tools=tools, **GREEDY)
    assert r.status == "completed" and r.usage.output_tokens > 0
    count = client.responses.input_tokens.count(model=CHAT, input=items, tools=tools)
    assert count.input_tokens == r.usage.input_tokens


def test_previous_response_id_continues_the_conversation(api_daemon: ApiDaemon) -> None:
    client = sdk(api_daemon)
    first = client.responses.create(model=CHAT, input="Hello there.", **GREEDY)
    second = client.responses.create(model=CHAT, previous_response_id=first.id, input="And again?", **GREEDY)
    # The same conversation written out by hand costs the same input tokens: the history was sent.
    history = [
        {"role": "user", "content": "Hello there."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "And again?"},
    ]
    explicit = client.responses.create(model=CHAT, input=history, **GREEDY)
    assert second.usage.input_tokens == explicit.usage.input_tokens
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.output_text == explicit.output_text

    assert client.responses.retrieve(first.id).output_text == first.output_text
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError, match="keeps the last"):
        client.responses.create(model=CHAT, previous_response_id=first.id, input="Hm?", **GREEDY)

    unstored = client.responses.create(model=CHAT, input="Not kept.", store=False, **GREEDY)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)


def test_a_stopped_model_starts_on_demand_and_errors_are_openai_shaped(api_daemon: ApiDaemon) -> None:
    api_daemon.proc.client.stop(CHAT)
    client = sdk(api_daemon)
    assert client.responses.create(model=CHAT, input="Hi", **GREEDY).status == "completed"
    with pytest.raises(openai.NotFoundError, match="No model named"):
        client.responses.create(model="no-such-model", input="Hi")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=api_daemon.v1, api_key="wrong").responses.create(model=CHAT, input="Hi")


def test_leaving_a_streamed_response_stops_the_engine(api_daemon: ApiDaemon) -> None:
    api_daemon.proc.client.start(SLOW)
    body = {"model": SLOW, "input": "Tell a very long story.", "max_output_tokens": 3000, "stream": True,
            "temperature": 0, "ignore_eos": True}  # fmt: skip

    @contextmanager
    def stream():
        with httpx.stream("POST", api_daemon.v1 + "/responses", json=body, headers=api_daemon.headers,
                          timeout=300) as r:  # fmt: skip
            assert r.status_code == 200
            yield r.iter_lines()

    assert_stops_after_disconnect(api_daemon, stream)
