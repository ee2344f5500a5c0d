"""The /v1 request checks: OpenAI's 400s for bad shapes, and nothing refused that OpenAI or llama.cpp take."""

from __future__ import annotations

from typing import Any

import pytest

from qwendesk.daemon.routes.openai_checks import InvalidParameter, check_request

CHAT = "/v1/chat/completions"
OK: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def refusal(path: str, body: dict[str, Any]) -> InvalidParameter:
    with pytest.raises(InvalidParameter) as caught:
        check_request(path, body)
    return caught.value


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": "hi"}, "messages", "array"),
        ({"messages": ["hi"]}, "messages[0]", "object"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "'wizard' is not one of"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "Missing"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "Missing"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content", "a string or an array"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video"}]}]},
            "messages[0].content[0].type",
            "video",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
            "Missing",
        ),
        (
            {"messages": [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "u"}}]}]},
            "messages[0].content[0].type",
            "'text'",
        ),
        ({"messages": [{"role": "assistant"}]}, "messages[0].content", "tool_calls"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id", "Missing"),
        ({"temperature": 2.5}, "temperature", "less than or equal to 2"),
        ({"temperature": "0.5"}, "temperature", "a number"),
        ({"temperature": True}, "temperature", "a number"),
        ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"n": 0}, "n", "greater than or equal to 1"),
        ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"max_completion_tokens": 0}, "max_completion_tokens", "greater than or equal to 1"),
        ({"presence_penalty": -3}, "presence_penalty", "greater than or equal to -2"),
        ({"frequency_penalty": 2.1}, "frequency_penalty", "less than or equal to 2"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
        ({"stop": ["a", 5]}, "stop[1]", "a string"),
        ({"stream": "true"}, "stream", "a boolean"),
        ({"top_logprobs": 3}, "top_logprobs", "logprobs"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "json_object"),
        ({"tool_choice": "sometimes"}, "tool_choice", "required"),
        ({"tools": [{"type": "function", "function": {}}]}, "tools[0].function.name", "Missing"),
    ],
)
def test_chat_requests_openai_refuses(change: dict[str, Any], param: str, words: str) -> None:
    error = refusal(CHAT, {**OK, **change})
    assert error.param == param and words in error.message, error.message
    assert error.code == "bad_request" and param in error.message


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/embeddings", {"model": "m", "input": ""}, "input"),
        ("/v1/embeddings", {"model": "m", "input": []}, "input"),
        ("/v1/embeddings", {"model": "m", "input": ["ok", ""]}, "input[1]"),
        ("/v1/embeddings", {"model": "m"}, "input"),
        ("/v1/embeddings", {"model": "m", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ("/v1/completions", {"model": "m"}, "prompt"),
        ("/v1/completions", {"model": "m", "prompt": []}, "prompt"),
        ("/v1/completions", {"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
        ("/v1/completions", {"model": "m", "prompt": "x", "max_tokens": -1}, "max_tokens"),
    ],
)
def test_completions_and_embeddings_openai_refuses(path: str, body: dict[str, Any], param: str) -> None:
    assert refusal(path, body).param == param


def test_what_openai_and_llama_cpp_accept_passes() -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    chat = {
        **OK,
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:"}},
                ],
            },
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "content": "sunny", "tool_call_id": "c1"},
            {"role": "assistant", "content": "It is sunny.", "reasoning_content": "..."},
        ],
        "temperature": 0,
        "top_p": 1,
        "n": 1,
        "max_tokens": 8,
        "stop": "\n",
        "stream": True,
        "stream_options": {"include_usage": True},
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "p", "schema": {"type": "object"}},
        },
        "tools": [tool],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        # llama.cpp's own options pass untouched
        "top_k": 1,
        "ignore_eos": True,
        "cache_prompt": False,
        "chat_template_kwargs": {"enable_thinking": False},
    }
    check_request(CHAT, chat)
    check_request(
        "/v1/completions", {"model": "m", "prompt": [1, 2, 3], "max_tokens": 0, "echo": True, "logprobs": 2}
    )
    check_request("/v1/completions", {"model": "m", "prompt": ["a", "b"], "stop": None})
    check_request("/v1/embeddings", {"model": "m", "input": [[1, 2], [3]], "encoding_format": "base64"})
    check_request("/v1/models", {})  # no shape known: nothing checked
