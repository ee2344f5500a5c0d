"""Forced tool calls: what counts as forced, the constrained request, and calls read back from text."""

from __future__ import annotations

import json
import random

import pytest

from qwendesk.daemon.errors import BadRequest
from qwendesk.daemon.routes.tool_calls import (
    CallArguments,
    CallEnd,
    CallStart,
    ChatCallStream,
    ForcedChoice,
    ToolCallParser,
    call_grammar,
    chat_reply,
    chat_tools,
    closed,
    constrain,
    forced_choice,
    parse_calls,
    writes_qwen_calls,
)
from tests.fixtures.synthetic import QWEN25_CHAT_TEMPLATE

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}  # fmt: skip
TIME = {"type": "function", "function": {"name": "get_time"}}
TOOLS = [WEATHER, TIME]


def call_text(name: str, arguments: dict) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


def test_what_counts_as_a_forced_choice() -> None:
    assert forced_choice("required", TOOLS, None) == ForcedChoice(("get_weather", "get_time"), True)
    assert forced_choice("required", TOOLS, False).parallel is False
    # OpenAI chat, OpenAI Responses and Anthropic spell a named function each their way.
    for choice in (
        {"type": "function", "function": {"name": "get_time"}},
        {"type": "function", "name": "get_time"},
        {"type": "tool", "name": "get_time"},
    ):
        assert forced_choice(choice, TOOLS, None) == ForcedChoice(("get_time",), False)
    assert forced_choice({"type": "any"}, TOOLS, True).names == ("get_weather", "get_time")
    for free in ("auto", "none", None, {"type": "auto"}, {"type": "allowed_tools"}):
        assert forced_choice(free, TOOLS, None) is None
    assert forced_choice("required", [], None) is None  # nothing to call
    with pytest.raises(BadRequest, match="not among the tools"):
        forced_choice({"type": "function", "name": "launch_rockets"}, TOOLS, None)


def test_the_constrained_request_keeps_the_prompt_and_adds_the_grammar() -> None:
    body = {"model": "m", "messages": [], "tools": TOOLS, "tool_choice": "required", "parallel_tool_calls": True,
            "response_format": {"type": "json_object"}, "chat_template_kwargs": {"enable_thinking": False},
            "ignore_eos": True}  # fmt: skip
    out = constrain(body, chat_tools(body), forced_choice("required", TOOLS, True))
    assert not {"tools", "tool_choice", "parallel_tool_calls", "response_format", "ignore_eos"} & set(out)
    assert out["chat_template_kwargs"] == {"enable_thinking": False, "tools": TOOLS}  # same template input
    assert (
        out["grammar"].startswith("%llguidance {}\n") and body["tools"] == TOOLS
    )  # the client's body untouched
    assert writes_qwen_calls(QWEN25_CHAT_TEMPLATE) and not writes_qwen_calls("{{ messages }}")


def test_grammar_names_only_the_allowed_functions_with_closed_objects() -> None:
    grammar = call_grammar(TOOLS, ForcedChoice(("get_weather",), False))
    lines = dict(line.split(": ", 1) for line in grammar.splitlines()[1:])
    assert lines["start"] == "call" and lines["call"] == '"<tool_call>\\n" body "\\n</tool_call>"'
    schema = json.loads(lines["body"].removeprefix("%json "))
    (variant,) = schema["anyOf"]
    assert variant["properties"]["name"] == {"const": "get_weather"}
    assert variant["properties"]["arguments"]["additionalProperties"] is False
    assert schema["x-guidance"]["whitespace_flexible"] is False
    several = call_grammar(TOOLS, ForcedChoice(("get_weather", "get_time"), True))
    assert 'start: call ("\\n" call)*' in several and several.count('"const"') == 2
    # A function without parameters takes an empty object.
    assert closed({"type": "object", "properties": {}})["additionalProperties"] is False
    assert closed({"type": "object", "properties": {"a": {"type": "object", "properties": {}}},
                   "additionalProperties": True})["properties"]["a"]["additionalProperties"] is False  # fmt: skip
    assert closed({"type": "object", "additionalProperties": True})["additionalProperties"] is True


def test_calls_are_read_as_their_text_arrives_however_it_is_cut() -> None:
    args = {"city": 'Pa}r"is{', "list": [1, {"x": "]"}], "n": None}
    text = call_text("get_weather", args) + "\n" + call_text("get_time", {})
    rng = random.Random(7)
    for _ in range(50):
        parser, events, i = ToolCallParser(), [], 0
        while i < len(text):
            n = rng.randint(1, 6)
            events += parser.feed(text[i : i + n])
            i += n
        assert parser.calls == [("get_weather", json.dumps(args)), ("get_time", "{}")]
        streamed = "".join(e.delta for e in events if isinstance(e, CallArguments) and e.index == 0)
        assert streamed == json.dumps(args)
        kinds = [type(e) for e in events if not isinstance(e, CallArguments)]
        assert kinds == [CallStart, CallEnd, CallStart, CallEnd]
    # Cut off by max_tokens: the open call is reported with what was written.
    assert parse_calls(text[: text.index('r\\"is')]) == ([], ("get_weather", '{"city": "Pa}'))


def test_a_chat_completion_becomes_tool_calls() -> None:
    data = {"choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
            "content": call_text("get_weather", {"city": "Paris"})}}]}  # fmt: skip
    message = chat_reply(data)["choices"][0]
    assert message["finish_reason"] == "tool_calls" and message["message"]["content"] is None
    (call,) = message["message"]["tool_calls"]
    assert call["id"].startswith("call_") and call["function"] == {"name": "get_weather",
                                                                  "arguments": '{"city": "Paris"}'}  # fmt: skip


def test_a_streamed_chat_completion_becomes_tool_call_deltas() -> None:
    stream, out = ChatCallStream(), []
    text = call_text("get_weather", {"city": "Paris"})
    chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m"}
    out += stream(
        (None, {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]})
    )
    for piece in (text[:5], text[5:30], text[30:]):
        out += stream(
            (None, {**chunk, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        )
    out += stream((None, {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    out += stream((None, {**chunk, "choices": [], "usage": {"prompt_tokens": 3}}))
    out += stream((None, "[DONE]"))
    datas = [d for _, d in out]
    assert datas[0]["choices"][0]["delta"] == {"role": "assistant"}
    deltas = [tc for d in datas[1:-3] for tc in d["choices"][0]["delta"]["tool_calls"]]
    assert deltas[0]["id"].startswith("call_") and deltas[0]["function"] == {
        "name": "get_weather",
        "arguments": "",
    }
    assert "".join(d["function"]["arguments"] for d in deltas) == '{"city": "Paris"}'
    assert {d["index"] for d in deltas} == {0}
    assert all("content" not in d["choices"][0]["delta"] for d in datas[:-2])
    assert datas[-3]["choices"][0]["finish_reason"] == "tool_calls"
    assert datas[-2]["usage"] == {"prompt_tokens": 3} and datas[-1] == "[DONE]"
