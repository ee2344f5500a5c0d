"""Anthropic's Messages API at /v1/messages (+ /count_tokens), served by llama.cpp's own implementation.

Requests and answers (streamed or not) pass through as bytes, with `model` rewritten. The one exception is
a forced tool choice (`{"type": "any"}` or `{"type": "tool", "name": ...}`): llama.cpp's Messages endpoint
drops the grammar that forcing needs (see `tool_calls`), so such a request is translated to a chat
completion, constrained there, and its calls answered as `tool_use` blocks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response

from .media import refuse_remote_images
from .proxy import forward
from .relay import Event, forward_rewritten, json_body
from .tool_calls import (
    CallArguments,
    CallStart,
    ToolCallParser,
    constrain,
    forced_choice,
    forcing_applies,
    new_id,
    parse_calls,
)

router = APIRouter(prefix="/v1", tags=["anthropic"])
STOP_REASONS = {"length": "max_tokens", "stop": "end_turn", "tool_calls": "tool_use"}


@router.post("/messages")
async def create_message(request: Request) -> Response:
    """A message (streamed with `"stream": true`), starting the model if needed."""
    body = await json_body(request)
    refuse_remote_images(body, request.app.state.settings)
    tools = chat_tools(body.get("tools"))
    choice = body.get("tool_choice")
    parallel = not (isinstance(choice, dict) and choice.get("disable_parallel_tool_use"))
    forced = forced_choice(choice, tools, parallel) if tools else None
    model = body.get("model")
    if forced is None or not isinstance(model, str) or not forcing_applies(request.app.state.manager, model):
        return await forward(request, "/v1/messages", "chat")
    chat = constrain(chat_request(body), tools, forced)
    name = request.app.state.manager.find(model).name
    return await forward_rewritten(
        request,
        "/v1/chat/completions",
        chat,
        on_json=lambda data: message_from_chat(data, name),
        on_event=lambda: MessageCallStream(name),
    )


@router.post("/messages/count_tokens")
async def count_tokens(request: Request) -> Response:
    """How many input tokens a Messages request takes (llama.cpp's own count)."""
    return await forward(request, "/v1/messages/count_tokens", "chat")


# ---- Anthropic -> chat completions (forced tool calls only) ----------------------------------------------
def chat_tools(tools: Any) -> list[dict[str, Any]]:
    """Anthropic tools (`name`, `description`, `input_schema`) as chat templates take them."""
    if not isinstance(tools, list):
        return []
    out = []
    for tool in tools:
        if isinstance(tool, dict) and isinstance(tool.get("name"), str) and "input_schema" in tool:
            function = {"name": tool["name"], "parameters": tool["input_schema"]}
            if tool.get("description"):
                function["description"] = tool["description"]
            out.append({"type": "function", "function": function})
    return out


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")
    return ""


def _image(block: dict[str, Any]) -> dict[str, Any] | None:
    source = block.get("source") or {}
    if source.get("type") == "base64":
        url = f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    elif source.get("type") == "url":
        url = source.get("url", "")
    else:
        return None
    return {"type": "image_url", "image_url": {"url": url}}


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Anthropic's `system` and `messages` as chat messages: tool_use blocks become `tool_calls`,
    tool_result blocks `tool` messages, images data URLs; thinking blocks are left out."""
    messages: list[dict[str, Any]] = []
    system = _text(body.get("system"))
    if system:
        messages.append({"role": "system", "content": system})
    for message in body.get("messages") or []:
        role, content = message.get("role"), message.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for block in content if isinstance(content, list) else []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": block.get("text", "")})
            elif kind == "image" and (image := _image(block)) is not None:
                parts.append(image)
            elif kind == "tool_use":
                arguments = json.dumps(block.get("input", {}), ensure_ascii=False)
                calls.append({"id": block.get("id"), "type": "function",
                              "function": {"name": block.get("name"), "arguments": arguments}})  # fmt: skip
            elif kind == "tool_result":
                result = block.get("content")
                messages.append(
                    {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": _text(result)}
                )
        if role == "assistant":
            text = "".join(p.get("text", "") for p in parts)
            messages.append(
                {"role": "assistant", "content": text or None, **({"tool_calls": calls} if calls else {})}
            )
        elif parts:
            only_text = all(p["type"] == "text" for p in parts)
            messages.append(
                {"role": role, "content": "".join(p["text"] for p in parts) if only_text else parts}
            )
    return messages


def chat_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Messages request as a chat completion request (sampling options kept)."""
    chat: dict[str, Any] = {"model": body.get("model"), "messages": chat_messages(body)}
    for ours, theirs in (("max_tokens", "max_tokens"), ("temperature", "temperature"), ("top_p", "top_p"),
                         ("top_k", "top_k"), ("stop_sequences", "stop"), ("stream", "stream")):  # fmt: skip
        if body.get(ours) is not None:
            chat[theirs] = body[ours]
    if chat.get("stream"):
        chat["stream_options"] = {"include_usage": True}
    chat["tools"] = chat_tools(body.get("tools"))
    return chat


# ---- chat completions -> Anthropic ------------------------------------------------------------------------
def tool_use(name: str, arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments) if arguments else {}
    except ValueError:  # cut off by max_tokens
        value = {}
    return {"type": "tool_use", "id": new_id("toolu_"), "name": name, "input": value}


def message_from_chat(data: dict[str, Any], model: str) -> dict[str, Any]:
    """A constrained chat completion as an Anthropic message of tool_use blocks."""
    choice = (data.get("choices") or [{}])[0]
    calls, cut = parse_calls((choice.get("message") or {}).get("content") or "")
    usage = data.get("usage") or {}
    finish = choice.get("finish_reason")
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [tool_use(n, a) for n, a in [*calls, *([cut] if cut else [])]],
        "stop_reason": "max_tokens" if finish == "length" else "tool_use",
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.get("prompt_tokens", 0),
            "output_tokens": usage.get("completion_tokens", 0),
        },
    }


class MessageCallStream:
    """A constrained, streamed chat completion as Anthropic's events: each call a tool_use block whose
    input streams as `input_json_delta`."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.parser = ToolCallParser()
        self.started = False
        self.open_block: int | None = None
        self.finish: str | None = None

    def __call__(self, event: Event) -> Iterator[Event]:
        _, data = event
        if not isinstance(data, dict):
            return  # [DONE]: the Anthropic stream ends with message_stop instead
        if "error" in data:
            yield "error", {"type": "error", "error": {"type": "api_error", "message": str(data["error"])}}
            return
        if not self.started:
            self.started = True
            message = {"id": new_id("msg_"), "type": "message", "role": "assistant", "model": self.model,
                       "content": [], "stop_reason": None, "stop_sequence": None,
                       "usage": {"input_tokens": 0, "output_tokens": 0}}  # fmt: skip
            yield "message_start", {"type": "message_start", "message": message}
        for choice in data.get("choices") or []:
            for call in self.parser.feed((choice.get("delta") or {}).get("content") or ""):
                yield from self._block(call)
            self.finish = choice.get("finish_reason") or self.finish
        usage = data.get("usage")
        if usage:  # the last chunk (stream_options.include_usage)
            yield from self._close()
            stop = "max_tokens" if self.finish == "length" else "tool_use"
            usage = {
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
            }
            yield "message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                    "usage": usage}  # fmt: skip
            yield "message_stop", {"type": "message_stop"}

    def _block(self, call: Any) -> Iterator[Event]:
        if isinstance(call, CallStart):
            yield from self._close()
            self.open_block = call.index
            block = {"type": "tool_use", "id": new_id("toolu_"), "name": call.name, "input": {}}
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": call.index, "content_block": block},
            )
        elif isinstance(call, CallArguments):
            delta = {"type": "input_json_delta", "partial_json": call.delta}
            yield "content_block_delta", {"type": "content_block_delta", "index": call.index, "delta": delta}

    def _close(self) -> Iterator[Event]:
        if self.open_block is not None:
            yield "content_block_stop", {"type": "content_block_stop", "index": self.open_block}
            self.open_block = None
