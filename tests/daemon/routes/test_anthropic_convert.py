"""Anthropic <-> chat completions for forced tool use (the only Messages requests the daemon translates)."""

from __future__ import annotations

import json

from qwendesk.daemon.routes.anthropic import MessageCallStream, chat_request, chat_tools, message_from_chat

TOOL = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object"}}


def test_a_messages_request_as_a_chat_request() -> None:
    body = {
        "model": "m",
        "max_tokens": 50,
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "stream": True,
        "system": [{"type": "text", "text": "Be brief."}],
        "tools": [TOOL],
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look:"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
                    },
                ],
            },  # fmt: skip
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "hm"},
                    {"type": "text", "text": "Ok."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                ],
            },  # fmt: skip
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": "Sunny"}],
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },  # fmt: skip
        ],
    }
    chat = chat_request(body)
    assert (chat["max_tokens"], chat["temperature"], chat["stop"]) == (50, 0.2, ["END"])
    assert chat["stream"] and chat["stream_options"] == {"include_usage": True}
    assert chat["tools"] == chat_tools([TOOL]) == [{"type": "function", "function": {
        "name": "get_weather", "parameters": {"type": "object"}, "description": "Weather"}}]  # fmt: skip
    system, user, assistant, tool, follow = chat["messages"]
    assert system == {"role": "system", "content": "Be brief."}
    assert user["content"][1] == {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    assert assistant["content"] == "Ok." and assistant["tool_calls"] == [{"id": "toolu_1", "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]  # fmt: skip
    assert tool == {"role": "tool", "tool_call_id": "toolu_1", "content": "Sunny"}
    assert follow == {"role": "user", "content": "And tomorrow?"}


def test_a_constrained_chat_completion_as_a_message() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    data = {"choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 30, "completion_tokens": 12}}  # fmt: skip
    message = message_from_chat(data, "m")
    assert message["stop_reason"] == "tool_use" and message["model"] == "m"
    (block,) = message["content"]
    assert (
        block["type"] == "tool_use"
        and block["id"].startswith("toolu_")
        and block["input"] == {"city": "Paris"}
    )
    assert message["usage"] == {"input_tokens": 30, "output_tokens": 12}


def test_a_constrained_stream_as_anthropic_events() -> None:
    text = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    stream, out = MessageCallStream("m"), []
    for piece in (text[:25], text[25:50], text[50:]):
        out += stream((None, {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}))
    out += stream((None, {"choices": [{"delta": {}, "finish_reason": "stop"}]}))
    out += stream((None, {"choices": [], "usage": {"prompt_tokens": 30, "completion_tokens": 12}}))
    out += stream((None, "[DONE]"))
    names = [n for n, _ in out]
    assert names[0] == "message_start" and names[1] == "content_block_start"
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert out[1][1]["content_block"]["name"] == "get_weather"
    partial = "".join(d["delta"]["partial_json"] for n, d in out if n == "content_block_delta")
    assert json.loads(partial) == {"city": "Paris"}
    assert out[-2][1]["delta"]["stop_reason"] == "tool_use" and out[-2][1]["usage"]["output_tokens"] == 12
