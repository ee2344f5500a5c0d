"""OpenAI's Responses API at /v1/responses, served by llama.cpp's own implementation (bytes through).

What the daemon adds, each where llama.cpp stops short (xllamacpp 2026.10.11549):

* stream events get the `sequence_number`, `output_index` and `content_index` llama.cpp leaves out, and
  `response.created` a full response (`output: []`): the openai SDK's `responses.stream()` helper fails
  without them (it indexes the output by them);
* `previous_response_id`, which llama.cpp refuses: the daemon keeps the last `STORED` responses (with
  `store` not false) in memory until it stops, and sends a follow-up as the whole conversation; GET and
  DELETE /v1/responses/{id} read and drop them;
* input messages from the assistant written without `"type": "message"` (valid for OpenAI; llama.cpp
  refuses them: "Cannot determine type of 'item'") get it;
* forced tool choices (`"required"`, `{"type": "function", "name": ...}`), as `tool_calls` explains.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response

from ..errors import NotFound
from .media import refuse_remote_images
from .proxy import forward
from .relay import Event, forward_rewritten, json_body
from .tool_calls import (
    CallArguments,
    CallEnd,
    CallEvent,
    CallStart,
    ToolCallParser,
    constrain,
    forced_choice,
    forcing_applies,
    new_id,
    parse_calls,
)

router = APIRouter(prefix="/v1", tags=["openai"])
STORED = 256
# Events that address one content part of an output item.
_PART_EVENTS = frozenset(
    f"response.{e}" for e in ("content_part.added", "content_part.done", "output_text.delta", "output_text.done",
                              "reasoning_text.delta", "reasoning_text.done", "refusal.delta", "refusal.done",
                              "output_text.annotation.added")
)  # fmt: skip


class ResponseStore:
    """The last responses, by id, with the input that led to each (for `previous_response_id`)."""

    def __init__(self, size: int = STORED) -> None:
        self.size = size
        self.entries: OrderedDict[str, tuple[dict[str, Any], list[Any]]] = OrderedDict()

    def keep(self, response: dict[str, Any], input_items: list[Any]) -> None:
        if isinstance(response.get("id"), str):
            self.entries[response["id"]] = (response, input_items)
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def get(self, response_id: str) -> tuple[dict[str, Any], list[Any]]:
        try:
            return self.entries[response_id]
        except KeyError:
            raise NotFound(
                f"No response '{response_id}': qwendesk keeps the last {self.size} responses in memory until it "
                "stops. Send the whole conversation as `input` instead."
            ) from None


def _store(request: Request) -> ResponseStore:
    state = request.app.state
    if not hasattr(state, "responses"):
        state.responses = ResponseStore()
    return state.responses


def typed_messages(items: list[Any]) -> list[Any] | None:
    """`items` with `"type": "message"` on role-only assistant messages, or None when none lacks it."""
    if not any(isinstance(i, dict) and i.get("role") == "assistant" and "type" not in i for i in items):
        return None
    return [
        {"type": "message", **i} if isinstance(i, dict) and "role" in i and "type" not in i else i
        for i in items
    ]


def input_items(value: Any) -> list[Any]:
    """A Responses `input` as a list of items (a string is one user message)."""
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    return list(value) if isinstance(value, list) else []


# ---- the route -------------------------------------------------------------------------------------------
@router.post("/responses")
async def create_response(request: Request) -> Response:
    """Create a response (streamed with `"stream": true`), starting the model if needed."""
    body = await json_body(request)
    refuse_remote_images(body, request.app.state.settings)
    store = _store(request)
    previous = body.get("previous_response_id")
    changed = previous is not None
    if previous is not None:
        response, earlier = store.get(str(previous))
        body = {k: v for k, v in body.items() if k != "previous_response_id"}
        body["input"] = [*earlier, *response.get("output", []), *input_items(body.get("input"))]
    if isinstance(body.get("input"), list) and (typed := typed_messages(body["input"])) is not None:
        body, changed = {**body, "input": typed}, True
    keep = body.get("store", True) is not False
    sent_input = input_items(body.get("input"))
    tools = chat_format_tools(body.get("tools"))
    model = body.get("model")
    forced = forced_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls")) if tools else None
    if forced is not None and isinstance(model, str) and forcing_applies(request.app.state.manager, model):
        body, changed = constrain(body, tools, forced), True
    else:
        forced = None
    name = request.app.state.manager.find(model).name if isinstance(model, str) and model else ""

    def completed(response: dict[str, Any]) -> dict[str, Any]:
        if forced is not None:
            response["output"] = call_items(response.get("output", []))
        if keep:
            store.keep(response, sent_input)
        return response

    def events() -> ResponsesStream:
        return ResponsesStream(name, completed, calls=forced is not None)

    return await forward_rewritten(request, "/v1/responses", body if changed else None, on_json=completed,
                                   on_event=events)  # fmt: skip


@router.post("/responses/input_tokens")
async def count_input_tokens(request: Request) -> Response:
    """How many tokens a Responses request's input takes (llama.cpp's own count)."""
    return await forward(request, "/v1/responses/input_tokens", "chat")


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    return _store(request).get(response_id)[0]


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    store = _store(request)
    store.get(response_id)
    del store.entries[response_id]
    return {"id": response_id, "object": "response", "deleted": True}


# ---- tools -----------------------------------------------------------------------------------------------
def chat_format_tools(tools: Any) -> list[dict[str, Any]]:
    """Responses function tools (`{"type": "function", "name", "parameters"}`) as chat templates take them."""
    if not isinstance(tools, list):
        return []
    keys = ("name", "description", "parameters")
    return [
        {"type": "function", "function": {k: t[k] for k in keys if k in t}}
        for t in tools
        if isinstance(t, dict) and t.get("type") == "function" and isinstance(t.get("name"), str)
    ]


def function_call_item(name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": new_id("fc_"), "call_id": new_id("call_"), "name": name,
            "arguments": arguments, "status": status}  # fmt: skip


def call_items(output: list[Any]) -> list[Any]:
    """A forced reply's output: its message text read back as function calls (other items kept)."""
    kept = [i for i in output if not (isinstance(i, dict) and i.get("type") == "message")]
    text = "".join(
        part.get("text", "")
        for item in output
        if isinstance(item, dict) and item.get("type") == "message"
        for part in item.get("content", [])
        if isinstance(part, dict)
    )
    calls, cut = parse_calls(text)
    items = kept + [function_call_item(n, a) for n, a in calls]
    if cut is not None:
        items.append(function_call_item(*cut, status="incomplete"))
    return items


# ---- the stream ------------------------------------------------------------------------------------------
class ResponsesStream:
    """Completes llama.cpp's Responses events (see the module doc); with `calls`, a forced reply's text
    becomes function-call events as it is written."""

    def __init__(self, model: str, completed: Any, *, calls: bool = False) -> None:
        self.model, self.completed = model, completed
        self.sequence = 0
        self.items: dict[str, int] = {}  # item id -> output_index
        self.parts: dict[str, int] = {}  # item id -> index of its latest content part
        self.parser = ToolCallParser() if calls else None
        self.call_items: list[dict[str, Any]] = []

    def __call__(self, event: Event) -> Iterator[Event]:
        name, data = event
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            yield event  # an error from the engine or the proxy
            return
        for out in self._calls(data) if self.parser is not None else (data,):
            yield out["type"], self._complete(out)

    def _complete(self, data: dict[str, Any]) -> dict[str, Any]:
        kind = data["type"]
        data.setdefault("sequence_number", self.sequence)
        self.sequence += 1
        if kind in ("response.created", "response.in_progress", "response.completed", "response.failed"):
            response = data.setdefault("response", {})
            for key, value in (("object", "response"), ("created_at", int(time.time())), ("model", self.model),
                               ("output", []), ("status", "in_progress")):  # fmt: skip
                response.setdefault(key, value)
            if kind == "response.completed":
                data["response"] = self.completed(response)
            return data
        item = data.get("item")
        item_id = data.get("item_id") or (item.get("id") if isinstance(item, dict) else None)
        if kind == "response.output_item.added" and item_id is not None:
            self.items.setdefault(item_id, len(self.items))
        if item_id in self.items:
            data.setdefault("output_index", self.items[item_id])
        if kind == "response.content_part.added":
            self.parts[item_id] = self.parts.get(item_id, -1) + 1
        if kind in _PART_EVENTS:
            data.setdefault("content_index", max(self.parts.get(item_id, 0), 0))
        return data

    def _calls(self, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """A forced reply: its message events give way to function-call events."""
        assert self.parser is not None
        kind = data["type"]
        if kind == "response.output_text.delta":
            for event in self.parser.feed(str(data.get("delta", ""))):
                yield from self._call_events(event)
            return
        if kind.startswith(("response.output_item.", "response.content_part.", "response.output_text.")):
            return  # the message that carries the calls' text
        if kind == "response.completed":
            cut = self.parser.open_call
            if cut is not None:
                self.call_items.append(function_call_item(*cut, status="incomplete"))
            data.setdefault("response", {})["output"] = self.call_items
        yield data

    def _call_events(self, event: CallEvent) -> Iterator[dict[str, Any]]:
        if isinstance(event, CallStart):
            item = function_call_item(event.name, "", status="in_progress")
            self.call_items.append(item)
            yield {"type": "response.output_item.added", "item": dict(item)}
            return
        item = self.call_items[event.index]
        if isinstance(event, CallArguments):
            yield {
                "type": "response.function_call_arguments.delta",
                "item_id": item["id"],
                "delta": event.delta,
            }
        elif isinstance(event, CallEnd):
            item.update(arguments=event.arguments, status="completed")
            yield {"type": "response.function_call_arguments.done", "item_id": item["id"], "name": item["name"],
                   "arguments": event.arguments}  # fmt: skip
            yield {"type": "response.output_item.done", "item": dict(item)}
