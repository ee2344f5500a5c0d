"""The Ollama-compatible listener through the unmodified `ollama` client: list, show, ps, version, chat and
generate (streamed as NDJSON and not, with the engine's own greedy answer), embed, load/unload, the guards,
and a generation that stops when its client leaves."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import httpx
import ollama
import pytest

from tests.daemon.routes.api_daemon import (
    CHAT,
    EMBED,
    RERANK,
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


GREEDY = {"temperature": 0, "num_predict": 24}
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def client(api: ApiDaemon, **kwargs) -> ollama.Client:
    return ollama.Client(host=api.ollama_url, headers=api.headers, timeout=300, **kwargs)


def reference_chat(url: str, messages: list[dict], max_tokens: int = 24) -> dict:
    body = {"model": "x", "messages": messages, "max_tokens": max_tokens, "temperature": 0}
    return httpx.post(url + "/v1/chat/completions", json=body, timeout=300).json()


def test_models_are_listed_as_ollama_lists_them(api_daemon: ApiDaemon) -> None:
    c = client(api_daemon)
    names = {m.model: m for m in c.list().models}
    assert {f"{CHAT}:latest", f"{EMBED}:latest", f"{SLOW}:latest"} <= set(names)
    assert f"{RERANK}:latest" not in names  # Ollama has no rerank API
    chat = names[f"{CHAT}:latest"]
    assert chat.details.format == "gguf" and chat.details.family == "qwen2" and chat.size > 0
    assert len(chat.digest) == 64 and chat.details.quantization_level == "Q8_0"

    shown = c.show(f"{CHAT}:latest")
    assert {"completion", "tools"} <= set(shown.capabilities) and "<tool_call>" in shown.template
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert "embedding" in c.show(EMBED).capabilities  # the tag may be left out
    assert c.ps().models == [] or all(m.model.endswith(":latest") for m in c.ps().models)
    assert httpx.get(api_daemon.ollama_url + "/api/version", headers=api_daemon.headers).json()["version"]
    assert httpx.get(api_daemon.ollama_url + "/").text == "Ollama is running"


def test_chat_and_generate_are_the_engines_own(api_daemon: ApiDaemon, qwen2_gguf: Path) -> None:
    ref = reference_for(api_daemon, CHAT, qwen2_gguf)
    theirs = reference_chat(ref.url, QUESTION)
    text = theirs["choices"][0]["message"]["content"]
    c = client(api_daemon)
    name = f"{CHAT}:latest"

    reply = c.chat(model=name, messages=QUESTION, options=GREEDY)
    assert reply.message.role == "assistant" and reply.message.content == text and text
    finish = "length" if theirs["choices"][0]["finish_reason"] == "length" else "stop"
    assert reply.done and reply.done_reason == finish and reply.model == name
    assert (reply.prompt_eval_count, reply.eval_count) == (
        theirs["usage"]["prompt_tokens"],
        theirs["usage"]["completion_tokens"],
    )
    assert reply.eval_duration > 0 and reply.total_duration >= reply.eval_duration

    parts = list(c.chat(model=name, messages=QUESTION, options=GREEDY, stream=True))
    assert all(not p.done for p in parts[:-1]) and parts[-1].done
    assert parts[-1].eval_count == theirs["usage"]["completion_tokens"]
    assert "".join(p.message.content for p in parts) == text

    # generate: the prompt as a user turn of the model's template; raw: a plain completion.
    generated = c.generate(model=name, prompt=QUESTION[0]["content"], options=GREEDY)
    assert generated.response == text
    streamed = "".join(p.response for p in c.generate(model=name, prompt=QUESTION[0]["content"], options=GREEDY,
                                                         stream=True))  # fmt: skip
    assert streamed == text
    raw_ref = httpx.post(ref.url + "/v1/completions", json={"model": "x", "prompt": "The capital of France is",
                         "max_tokens": 12, "temperature": 0}, timeout=300).json()  # fmt: skip
    raw = c.generate(model=name, prompt="The capital of France is", raw=True, options={"temperature": 0,
                     "num_predict": 12})  # fmt: skip
    assert raw.response == raw_ref["choices"][0]["text"]
    assert any(m.model == name for m in c.ps().models)


def test_tool_calls_and_results_in_the_history(api_daemon: ApiDaemon, qwen2_gguf: Path) -> None:
    """Ollama's tool calls (arguments as an object, no ids) and tool results become OpenAI's: the prompt is
    the one llama.cpp renders for the same conversation written the OpenAI way."""
    ref = reference_for(api_daemon, CHAT, qwen2_gguf)
    tool = {"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
    ollama_messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
        },  # fmt: skip
        {"role": "tool", "content": "Sunny", "tool_name": "get_weather"},
    ]
    openai_messages = [
        ollama_messages[0],
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },  # fmt: skip
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
    ]
    body = {"model": "x", "messages": openai_messages, "tools": [tool], "max_tokens": 8, "temperature": 0}
    theirs = httpx.post(ref.url + "/v1/chat/completions", json=body, timeout=300).json()
    reply = client(api_daemon).chat(model=CHAT, messages=ollama_messages, tools=[tool],
                                    options={"temperature": 0, "num_predict": 8})  # fmt: skip
    assert reply.prompt_eval_count == theirs["usage"]["prompt_tokens"]
    assert reply.message.content == (theirs["choices"][0]["message"]["content"] or "")


def test_embed(api_daemon: ApiDaemon) -> None:
    c = client(api_daemon)
    out = c.embed(model=f"{EMBED}:latest", input=["hello world", "what time is it"])
    assert len(out.embeddings) == 2 and out.model == f"{EMBED}:latest"
    for vector in out.embeddings:
        assert len(vector) == 64 and math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0, rel_tol=1e-3)
    openai_shape = httpx.post(api_daemon.v1 + "/embeddings", headers=api_daemon.headers, timeout=300,
                              json={"model": EMBED, "input": ["hello world"]}).json()  # fmt: skip
    assert openai_shape["data"][0]["embedding"] == pytest.approx(out.embeddings[0], abs=1e-6)
    single = c.embeddings(model=EMBED, prompt="hello world")
    assert single.embedding == pytest.approx(out.embeddings[0], abs=1e-6)
    with pytest.raises(ollama.ResponseError) as err:
        c.embed(model=CHAT, input="x")
    assert err.value.status_code == 400 and "does not serve embeddings" in err.value.error


def test_load_unload_and_errors(api_daemon: ApiDaemon) -> None:
    c = client(api_daemon)
    assert c.generate(model=CHAT, prompt="", keep_alive=0).done_reason == "unload"
    assert api_daemon.proc.model(CHAT)["state"] == "available"
    assert c.generate(model=CHAT, prompt="").done_reason == "load"
    assert api_daemon.proc.model(CHAT)["state"] == "running"
    with pytest.raises(ollama.ResponseError) as err:
        c.chat(model="no-such-model:latest", messages=QUESTION)
    assert err.value.status_code == 404 and "not found" in err.value.error
    with pytest.raises(ollama.ResponseError) as err:
        c.pull("llama3.2")
    assert err.value.status_code == 501 and "qwendesk pull" in err.value.error


def test_the_same_guards_as_the_api(api_daemon: ApiDaemon) -> None:
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=api_daemon.ollama_url).list()  # no token
    assert err.value.status_code == 401
    evil = httpx.get(
        api_daemon.ollama_url + "/api/tags", headers={**api_daemon.headers, "Host": "evil.example"}
    )
    assert evil.status_code == 403  # DNS rebinding
    page = httpx.get(api_daemon.ollama_url + "/api/tags",
                     headers={**api_daemon.headers, "Origin": "https://evil.example"})  # fmt: skip
    assert page.status_code == 403


def test_leaving_a_streamed_chat_stops_the_engine(api_daemon: ApiDaemon) -> None:
    api_daemon.proc.client.start(SLOW)
    body = {"model": f"{SLOW}:latest", "messages": [{"role": "user", "content": "Tell a very long story."}],
            "options": {"temperature": 0, "num_predict": 3000, "ignore_eos": True}}  # fmt: skip

    @contextmanager
    def stream():
        with httpx.stream("POST", api_daemon.ollama_url + "/api/chat", json=body, headers=api_daemon.headers,
                          timeout=300) as r:  # fmt: skip
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
            yield r.iter_lines()

    assert_stops_after_disconnect(api_daemon, stream)
