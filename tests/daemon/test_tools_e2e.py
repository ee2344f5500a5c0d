"""Tool calls that work with a Qwen-template model: a forced choice (one named function, or "required") is
a valid call to an allowed function whose arguments validate against its schema, through the unmodified
openai SDK (chat completions and Responses), the anthropic SDK and langchain's `bind_tools`; tool results
fed back are rendered by the model's own template.

The model is a tiny random-weight Qwen2 with Qwen2.5's chat template: its text is noise, so a valid call
can only come from the daemon's constraint (see daemon/routes/tool_calls.py), never from luck.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import anthropic
import httpx
import openai
import pytest
from pydantic import BaseModel, Field

from tests.daemon.routes.api_daemon import (
    CHAT,
    ApiDaemon,
    reference_for,
    shared_daemon,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def api_daemon(tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path, smollm2_gguf: Path):
    yield from shared_daemon(tmp_path_factory, qwen2_gguf, smollm2_gguf)


class GetWeather(BaseModel):
    """Get the weather of a city for the next days."""

    city: Annotated[str, Field(max_length=12)]
    unit: Literal["celsius", "fahrenheit"]
    days: Annotated[int, Field(ge=1, le=7)]


class GetTime(BaseModel):
    """Get the time in a time zone."""

    tz: Literal["UTC", "CET", "JST"]


SCHEMAS = {"get_weather": GetWeather, "get_time": GetTime}
ASK = "What is the weather in Paris for the next three days?"


def chat_tool(name: str) -> dict:
    model = SCHEMAS[name]
    return {"type": "function", "function": {"name": name, "description": model.__doc__,
                                             "parameters": model.model_json_schema()}}  # fmt: skip


def valid(name: str, arguments: str | dict) -> BaseModel:
    """The arguments parsed by the function's schema (raises if they do not validate)."""
    model = SCHEMAS[name]
    return (
        model.model_validate(arguments)
        if isinstance(arguments, dict)
        else model.model_validate_json(arguments)
    )


def sdk(api: ApiDaemon) -> openai.OpenAI:
    return openai.OpenAI(base_url=api.v1, api_key=api.token, timeout=300)


# ---- OpenAI chat completions ----------------------------------------------------------------------------
def test_named_function_is_called_through_chat_completions(api_daemon: ApiDaemon) -> None:
    client = sdk(api_daemon)
    tools = [chat_tool("get_weather"), chat_tool("get_time")]
    for seed in range(3):
        r = client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": ASK}],
            tools=tools,
            tool_choice={"type": "function", "function": {"name": "get_time"}},
            max_tokens=200,
            seed=seed,
        )
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.function.name == "get_time" and call.id.startswith("call_")
        valid("get_time", call.function.arguments)

    # Streamed: the call arrives as deltas (name first, then the arguments in pieces).
    stream = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": ASK}],
        tools=tools,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=200,
        stream=True,
    )
    name, arguments, pieces, finish = "", "", 0, None
    for chunk in stream:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            name += delta.function.name or ""
            arguments += delta.function.arguments or ""
            pieces += 1
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and finish == "tool_calls" and pieces > 2
    valid("get_weather", arguments)


def test_required_tool_choice_calls_one_or_more_allowed_functions(api_daemon: ApiDaemon) -> None:
    client = sdk(api_daemon)
    r = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": ASK}],
        tools=[chat_tool("get_weather"), chat_tool("get_time")],
        tool_choice="required",
        max_tokens=400,
        seed=0,
    )
    calls = r.choices[0].message.tool_calls
    assert calls and len({c.id for c in calls}) == len(calls)
    for call in calls:
        valid(call.function.name, call.function.arguments)
    one = client.chat.completions.create(
        model=CHAT,
        messages=[{"role": "user", "content": ASK}],
        tools=[chat_tool("get_weather"), chat_tool("get_time")],
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=200,
    )
    assert len(one.choices[0].message.tool_calls) == 1


def test_langchain_bind_tools_through_chat_completions(api_daemon: ApiDaemon) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model=CHAT, base_url=api_daemon.v1, api_key=api_daemon.token, max_tokens=200, timeout=300
    )
    message = llm.bind_tools([GetWeather, GetTime], tool_choice="GetWeather").invoke(ASK)
    (call,) = message.tool_calls
    assert call["name"] == "GetWeather"
    GetWeather.model_validate(call["args"])


def test_tool_results_are_rendered_by_the_models_template(api_daemon: ApiDaemon, qwen2_gguf: Path) -> None:
    """A call and its result fed back (auto choice: llama.cpp's own path) cost the prompt tokens llama.cpp
    itself counts for them, and the answer is the engine's own."""
    ref = reference_for(api_daemon, CHAT, qwen2_gguf)
    messages = [
        {"role": "user", "content": ASK},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {
                        "name": "get_weather",
                        "arguments": '{"city": "Paris", "unit": "celsius", "days": 3}',
                    },
                }
            ],
        },  # fmt: skip
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 C"},
    ]
    body = {"messages": messages, "tools": [chat_tool("get_weather")], "max_tokens": 16, "temperature": 0}
    theirs = httpx.post(ref.url + "/v1/chat/completions", json={"model": "x", **body}, timeout=300).json()
    ours = sdk(api_daemon).chat.completions.create(model=CHAT, **body)
    assert ours.usage.prompt_tokens == theirs["usage"]["prompt_tokens"]
    assert ours.choices[0].message.content == theirs["choices"][0]["message"]["content"]
    without = httpx.post(
        ref.url + "/v1/chat/completions", json={"model": "x", **body, "messages": messages[:1]}, timeout=300
    ).json()
    assert ours.usage.prompt_tokens > without["usage"]["prompt_tokens"] + 20  # the call and result are in


# ---- OpenAI Responses -------------------------------------------------------------------------------------
def responses_tool(name: str) -> dict:
    function = chat_tool(name)["function"]
    return {"type": "function", **function}


def test_forced_function_call_through_responses(api_daemon: ApiDaemon) -> None:
    client = sdk(api_daemon)
    tools = [responses_tool("get_weather"), responses_tool("get_time")]
    r = client.responses.create(model=CHAT, input=ASK, tools=tools, max_output_tokens=200,
                                tool_choice={"type": "function", "name": "get_weather"})  # fmt: skip
    (call,) = r.output
    assert call.type == "function_call" and call.name == "get_weather" and call.call_id.startswith("call_")
    valid("get_weather", call.arguments)

    events = list(client.responses.create(model=CHAT, input=ASK, tools=tools, max_output_tokens=400,
                                          tool_choice="required", parallel_tool_calls=False, stream=True))  # fmt: skip
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e.type == "response.output_item.done"]
    assert done.item.type == "function_call" and done.item.arguments == deltas
    valid(done.item.name, deltas)
    assert events[-1].type == "response.completed" and events[-1].response.output[0].arguments == deltas
    assert [e.sequence_number for e in events] == list(range(len(events)))

    with client.responses.stream(model=CHAT, input=ASK, tools=tools, max_output_tokens=200,
                                 tool_choice={"type": "function", "name": "get_time"}) as stream:  # fmt: skip
        final = stream.get_final_response()
    assert final.output[0].name == "get_time"
    valid("get_time", final.output[0].arguments)


def test_langchain_bind_tools_through_responses(api_daemon: ApiDaemon) -> None:
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=CHAT, base_url=api_daemon.v1, api_key=api_daemon.token, max_tokens=200, timeout=300,
                     use_responses_api=True)  # fmt: skip
    message = llm.bind_tools([GetWeather, GetTime], tool_choice="GetTime").invoke(ASK)
    (call,) = message.tool_calls
    assert call["name"] == "GetTime"
    GetTime.model_validate(call["args"])


# ---- Anthropic Messages -----------------------------------------------------------------------------------
def anthropic_tool(name: str) -> dict:
    model = SCHEMAS[name]
    return {"name": name, "description": model.__doc__, "input_schema": model.model_json_schema()}


def test_forced_tool_use_through_anthropic(api_daemon: ApiDaemon) -> None:
    client = anthropic.Anthropic(base_url=api_daemon.url, api_key=api_daemon.token, timeout=300)
    tools = [anthropic_tool("get_weather"), anthropic_tool("get_time")]
    m = client.messages.create(model=CHAT, max_tokens=200, messages=[{"role": "user", "content": ASK}],
                               tools=tools, tool_choice={"type": "tool", "name": "get_weather"})  # fmt: skip
    (block,) = m.content
    assert m.stop_reason == "tool_use" and block.type == "tool_use" and block.name == "get_weather"
    valid("get_weather", block.input)
    assert m.model == CHAT and m.usage.input_tokens > 50

    # Streamed, "any" tool: the input arrives as input_json deltas; the SDK assembles the block.
    with client.messages.stream(model=CHAT, max_tokens=400, messages=[{"role": "user", "content": ASK}], tools=tools,
                                tool_choice={"type": "any", "disable_parallel_tool_use": True}) as stream:  # fmt: skip
        partial = "".join(e.partial_json for e in stream if e.type == "input_json")
        final = stream.get_final_message()
    (block,) = final.content
    assert final.stop_reason == "tool_use" and block.input == json.loads(partial)
    valid(block.name, block.input)

    # The result fed back the Anthropic way: a tool_result block answering the tool_use id.
    follow = client.messages.create(
        model=CHAT,
        max_tokens=8,
        tools=tools,
        messages=[
            {"role": "user", "content": ASK},
            {"role": "assistant", "content": [block.model_dump(include={"type", "id", "name", "input"})]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "Sunny"}],
            },
        ],
    )
    assert follow.usage.output_tokens > 0
