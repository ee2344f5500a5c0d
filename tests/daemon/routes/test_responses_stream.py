"""The Responses route's own work: completing llama.cpp's stream events, stored responses, forced calls."""

from __future__ import annotations

import json

import pytest

from qwendesk.daemon.errors import NotFound
from qwendesk.daemon.routes.responses import (
    ResponsesStream,
    ResponseStore,
    call_items,
    chat_format_tools,
    input_items,
    typed_messages,
)

MSG = "msg_1"


def llama_events(text_pieces: list[str]) -> list[dict]:
    """The events llama.cpp (xllamacpp 2026.10.11549) streams for a text reply, as measured."""
    text = "".join(text_pieces)
    part = {"type": "output_text", "annotations": [], "logprobs": [], "text": text}
    return [
        {
            "type": "response.created",
            "response": {"id": "resp_1", "object": "response", "status": "in_progress"},
        },
        {
            "type": "response.in_progress",
            "response": {"id": "resp_1", "object": "response", "status": "in_progress"},
        },
        {
            "type": "response.output_item.added",
            "item": {
                "content": [],
                "id": MSG,
                "role": "assistant",
                "status": "in_progress",
                "type": "message",
            },
        },  # fmt: skip
        {"type": "response.content_part.added", "item_id": MSG, "part": {"type": "output_text", "text": ""}},
        *({"type": "response.output_text.delta", "item_id": MSG, "delta": p} for p in text_pieces),
        {"type": "response.output_text.done", "item_id": MSG, "text": text},
        {"type": "response.content_part.done", "item_id": MSG, "part": part},
        {
            "type": "response.output_item.done",
            "item": {
                "type": "message",
                "status": "completed",
                "id": MSG,
                "content": [part],
                "role": "assistant",
            },
        },  # fmt: skip
        {
            "type": "response.completed",
            "response": {
                "id": "resp_1",
                "object": "response",
                "created_at": 1,
                "status": "completed",
                "model": "m",
                "output": [
                    {
                        "type": "message",
                        "status": "completed",
                        "id": MSG,
                        "content": [part],
                        "role": "assistant",
                    }
                ],
                "usage": {"input_tokens": 3, "output_tokens": 2},
            },
        },  # fmt: skip
    ]


def run(stream: ResponsesStream, events: list[dict]) -> list[dict]:
    out = []
    for event in events:
        for name, data in stream((event["type"], event)):
            assert name == data["type"]
            out.append(data)
    return out


def test_events_get_what_the_sdk_indexes_by() -> None:
    kept = []
    out = run(ResponsesStream("m", lambda r: kept.append(r) or r), llama_events(["Hel", "lo"]))
    assert [e["sequence_number"] for e in out] == list(range(len(out)))
    created = out[0]["response"]
    assert created["output"] == [] and created["model"] == "m" and isinstance(created["created_at"], int)
    for event in out[2:-1]:
        assert event["output_index"] == 0, event
    parts = [e for e in out if "delta" in e or e["type"].startswith("response.content_part")]
    assert parts and all(e["content_index"] == 0 for e in parts)
    assert kept == [out[-1]["response"]] and out[-1]["response"]["output"][0]["content"][0]["text"] == "Hello"


def test_errors_and_unknown_data_pass_through() -> None:
    stream = ResponsesStream("m", lambda r: r)
    error = (None, {"error": {"message": "boom"}})
    assert list(stream(error)) == [error]
    assert list(stream((None, "[DONE]"))) == [(None, "[DONE]")]


def test_a_forced_reply_streams_as_function_calls() -> None:
    text = '<tool_call>\n{"name": "get_time", "arguments": {"tz": "UTC"}}\n</tool_call>'
    out = run(
        ResponsesStream("m", lambda r: r, calls=True), llama_events([text[:20], text[20:45], text[45:]])
    )
    kinds = [e["type"] for e in out]
    assert "response.output_text.delta" not in kinds and "response.content_part.added" not in kinds
    added = next(e for e in out if e["type"] == "response.output_item.added")
    assert added["item"]["type"] == "function_call" and added["item"]["name"] == "get_time"
    assert added["output_index"] == 0
    deltas = "".join(e["delta"] for e in out if e["type"] == "response.function_call_arguments.delta")
    assert deltas == '{"tz": "UTC"}'
    done = next(e for e in out if e["type"] == "response.output_item.done")
    assert done["item"]["arguments"] == deltas and done["item"]["status"] == "completed"
    (final,) = out[-1]["response"]["output"]
    assert final["type"] == "function_call" and final["call_id"] == added["item"]["call_id"]
    assert [e["sequence_number"] for e in out] == list(range(len(out)))


def test_a_forced_reply_becomes_function_call_items() -> None:
    text = '<tool_call>\n{"name": "a", "arguments": {}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {"x'
    output = [{"type": "message", "content": [{"type": "output_text", "text": text}]}]
    first, cut = call_items(output)
    assert (first["name"], first["arguments"], first["status"]) == ("a", "{}", "completed")
    assert (cut["name"], cut["arguments"], cut["status"]) == ("b", '{"x', "incomplete")
    assert call_items([first]) == [first]  # already calls: kept


def test_stored_responses_are_bounded_and_missing_ones_explained() -> None:
    store = ResponseStore(size=2)
    for n in range(3):
        store.keep({"id": f"resp_{n}", "output": []}, [n])
    assert list(store.entries) == ["resp_1", "resp_2"]
    assert store.get("resp_2") == ({"id": "resp_2", "output": []}, [2])
    with pytest.raises(NotFound, match="keeps the last 2 responses"):
        store.get("resp_0")


def test_input_shapes() -> None:
    assert input_items("hi") == [{"type": "message", "role": "user", "content": "hi"}]
    items = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "b"},
        {"type": "function_call"},
    ]
    typed = typed_messages(items)
    assert typed is not None and all(i.get("type") for i in typed) and typed[1]["content"] == "b"
    assert typed_messages([{"role": "user", "content": "a"}]) is None  # llama.cpp takes those as they are
    tools = [{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
             {"type": "web_search"}]  # fmt: skip
    assert chat_format_tools(tools) == [{"type": "function", "function": {"name": "f",
                                                                          "parameters": {"type": "object"}}}]  # fmt: skip
    assert json.dumps(chat_format_tools(None)) == "[]"
