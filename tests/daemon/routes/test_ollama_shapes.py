"""Ollama's shapes to and from the OpenAI API (pure functions; the real listener is in test_ollama_e2e)."""

from __future__ import annotations

import time

from qwendesk.daemon.routes import ollama_shapes as shapes
from qwendesk.daemon.schemas import ModelState, ModelView


def view(**fields) -> ModelView:
    base = {"name": "qwen-0.5b", "file": "/nowhere/qwen-0.5b.gguf", "architecture": "qwen2", "parameters": "0.5B",
            "quantization": "Q4_K_M", "size_bytes": 123, "abilities": ["chat", "tools"], "context_length": 32768}  # fmt: skip
    return ModelView(**{**base, **fields})


def test_models_listed_shown_and_named_as_ollama_does() -> None:
    entry = shapes.tag_entry(view())
    assert entry["name"] == entry["model"] == "qwen-0.5b:latest" and entry["size"] == 123
    assert entry["details"] == {"parent_model": "", "format": "gguf", "family": "qwen2", "families": ["qwen2"],
                                "parameter_size": "0.5B", "quantization_level": "Q4_K_M"}  # fmt: skip
    assert len(entry["digest"]) == 64 and entry["digest"] == shapes.tag_entry(view())["digest"]
    shown = shapes.show(view(), "{{ messages }}")
    assert shown["capabilities"] == ["completion", "tools"] and shown["template"] == "{{ messages }}"
    assert shown["model_info"]["qwen2.context_length"] == 32768
    assert shapes.capabilities(view(abilities=["embed"])) == ["embedding"]
    assert not shapes.listed(view(abilities=["rerank"])) and shapes.listed(view(abilities=["embed"]))
    running = shapes.running_entry(view(state=ModelState.RUNNING, n_ctx=4096), 60.0)
    assert running["context_length"] == 4096 and running["expires_at"] > shapes.now_iso()[:10]
    assert shapes.model_candidates("a:latest") == ["a:latest", "a"] and shapes.model_candidates("a") == ["a"]


def test_options_format_and_think() -> None:
    request = {"options": {"temperature": 0.1, "num_predict": 20, "top_k": 5, "stop": ["x"], "num_ctx": 8192,
                           "repeat_penalty": 1.1}, "format": {"type": "object"}, "think": False}  # fmt: skip
    out = shapes.sampling(request)
    assert (
        out["temperature"] == 0.1 and out["max_tokens"] == 20 and out["top_k"] == 5 and out["stop"] == ["x"]
    )
    assert out["repeat_penalty"] == 1.1 and "num_ctx" not in out  # the context is set when a model starts
    assert out["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert out["chat_template_kwargs"] == {"enable_thinking": False}
    assert shapes.sampling({"format": "json"})["response_format"] == {"type": "json_object"}
    assert "max_tokens" not in shapes.sampling({"options": {"num_predict": -1}})


def test_messages_tool_calls_get_ids_their_results_answer() -> None:
    messages = [
        {"role": "user", "content": "look", "images": ["iVBORw0KGgoAAAANSUhEUg=="]},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"function": {"name": "b", "arguments": {}}},
            ],
        },  # fmt: skip
        {"role": "tool", "content": "A", "tool_name": "a"},
        {"role": "tool", "content": "B", "tool_name": "b"},
    ]
    user, assistant, first, second = shapes.chat_messages(messages)
    assert user["content"][1]["image_url"]["url"].startswith("data:image/png;base64,iVBOR")
    ids = [c["id"] for c in assistant["tool_calls"]]
    assert assistant["tool_calls"][0]["function"] == {"name": "a", "arguments": '{"x": 1}'}
    assert [first["tool_call_id"], second["tool_call_id"]] == ids and len(set(ids)) == 2


def test_generate_is_a_chat_turn_or_a_raw_completion() -> None:
    path, body = shapes.generate_request({"prompt": "hi", "system": "s", "options": {"seed": 1}}, "m", True)
    assert path == "/v1/chat/completions" and body["seed"] == 1 and body["stream_options"]["include_usage"]
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    path, body = shapes.generate_request({"prompt": "hi", "raw": True}, "m", False)
    assert (path, body["prompt"], body["stream"]) == ("/v1/completions", "hi", False)


def test_replies_streamed_and_not() -> None:
    started = time.monotonic()
    data = {"choices": [{"message": {"content": "Hi", "reasoning_content": "hmm", "tool_calls": [
        {"function": {"name": "a", "arguments": '{"x": 1}'}}]}, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 2}, "timings": {"prompt_ms": 3, "predicted_ms": 4}}  # fmt: skip
    out = shapes.reply(data, "m:latest", started, "chat")
    assert out["message"] == {"role": "assistant", "content": "Hi", "thinking": "hmm",
                              "tool_calls": [{"function": {"name": "a", "arguments": {"x": 1}}}]}  # fmt: skip
    assert out["done"] and out["done_reason"] == "length" and out["eval_count"] == 2
    assert out["prompt_eval_duration"] == 3_000_000 and out["eval_duration"] == 4_000_000

    stream, lines = shapes.ReplyStream("m", started, "generate"), []
    for chunk in (
        {"choices": [{"delta": {"content": "Hel"}, "finish_reason": None}]},
        {"choices": [{"delta": {"content": "lo"}, "finish_reason": "stop"}], "timings": {"predicted_ms": 9}},
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}},
        "[DONE]",
    ):
        lines += [d for _, d in stream((None, chunk))]
    assert [d["response"] for d in lines] == ["Hel", "lo", ""] and [d["done"] for d in lines] == [
        False,
        False,
        True,
    ]
    assert lines[-1]["done_reason"] == "stop" and lines[-1]["eval_duration"] == 9_000_000

    calls = shapes.ReplyStream("m", started, "chat")
    parts = [{"index": 0, "function": {"name": "a", "arguments": ""}}, {"index": 0, "function": {"arguments": '{"x"'}},
             {"index": 0, "function": {"arguments": ": 1}"}}]  # fmt: skip
    for part in parts:
        assert list(calls((None, {"choices": [{"delta": {"tool_calls": [part]}}]}))) == []
    ((_, last),) = list(calls((None, "[DONE]")))
    assert last["message"]["tool_calls"] == [{"function": {"name": "a", "arguments": {"x": 1}}}]
    error = shapes.ReplyStream("m", started, "chat")
    assert list(error((None, {"error": {"message": "boom"}}))) == [(None, {"error": "boom"})]


def test_embed_reply_keeps_the_input_order() -> None:
    data = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}],
            "usage": {"prompt_tokens": 4}}  # fmt: skip
    out = shapes.embed_reply(data, "e", time.monotonic())
    assert out["embeddings"] == [[1.0, 0.0], [0.0, 1.0]] and out["prompt_eval_count"] == 4
