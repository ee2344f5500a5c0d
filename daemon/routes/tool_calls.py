"""Forced tool calls (`tool_choice` "required" or one named function) for models that call tools as Qwen does.

llama.cpp renders `tools` with the model's own template and parses `<tool_call>` replies into tool calls,
streamed as deltas, parallel calls and tool results included: "auto" and "none" stay entirely its own.
A forced choice does not. Measured with this llama.cpp (xllamacpp 2026.10.11549) on a Qwen2.5 template: a
named choice (`{"type": "function", ...}`) is taken as "auto" (warning "type must be string"); "required"
still lets the model write prose first (its grammar is "text until `<tool_call>`, then calls"), so a model
that answers in prose is never made to call; and a call written with a space inside (`{ "name"`) makes its
parser fail the whole request (HTTP 500). So for a forced choice the daemon:

* gives the tools to the template through `chat_template_kwargs` (the same prompt, token for token);
* constrains the reply with an llguidance grammar admitting only `<tool_call>\\n{"name": <an allowed
  function>, "arguments": <its parameters' schema>}\\n</tool_call>` in compact JSON, once, or one or more
  times when parallel calls are allowed (calls separated by a newline, as the template renders them);
* turns that text back into tool calls: `ToolCallParser` streams them as they are written.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request, Response

from ..errors import BadRequest
from .proxy import forward
from .relay import forward_rewritten, json_body

# A template that writes calls this way (Qwen2.5, Qwen3, Hermes) is the one the grammar below fits.
CALL_OPEN, CALL_CLOSE = "<tool_call>\n", "\n</tool_call>"
# Compact JSON with the spacing Qwen's template renders history with, so a call fed back is re-tokenized as
# the model wrote it (the prompt cache keeps it).
COMPACT_JSON = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}


@dataclass(frozen=True)
class ForcedChoice:
    """The functions a reply must call (one named, or any of the tools), and whether it may call several."""

    names: tuple[str, ...]
    parallel: bool


def writes_qwen_calls(chat_template: str | None) -> bool:
    """Whether a chat template has the model call tools inside `<tool_call>` tags."""
    return bool(chat_template) and "<tool_call>" in chat_template


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def forcing_applies(manager: Any, model: str) -> bool:
    """Whether the daemon constrains forced calls for `model`: it talks to the model's own llama-server
    (a remote Xinference drops the fields this needs) and the model's template writes Qwen-style calls."""
    if manager.supervisor.mode != "embedded":
        return False
    info = manager.find(model).files.info
    return info is not None and writes_qwen_calls(info.chat_template)


# ---- what the client forced --------------------------------------------------------------------------
def chat_tools(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The function tools of an OpenAI chat request, as the template takes them."""
    tools = body.get("tools")
    if not isinstance(tools, list):
        return []
    return [t for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]


def tool_name(tool: dict[str, Any]) -> str:
    return str(tool["function"].get("name", ""))


def forced_choice(choice: Any, tools: list[dict[str, Any]], parallel: Any) -> ForcedChoice | None:
    """A forced choice from OpenAI's chat or Responses spelling, or Anthropic's; None for auto and none.

    A name the tools do not define is a bad request, as with OpenAI.
    """
    names = tuple(tool_name(t) for t in tools)
    if not names:
        return None
    many = parallel is not False
    if choice in ("required", "any") or (isinstance(choice, dict) and choice.get("type") == "any"):
        return ForcedChoice(names, many)
    if not isinstance(choice, dict) or choice.get("type") not in ("function", "tool"):
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, dict) else choice.get("name")
    if name not in names:
        raise BadRequest(
            f"tool_choice names the function {name!r}, which is not among the tools {list(names)}."
        )
    return ForcedChoice((str(name),), False)


# ---- the constrained request ------------------------------------------------------------------------
def call_grammar(tools: list[dict[str, Any]], forced: ForcedChoice) -> str:
    """An llguidance grammar for the reply: one call (or several) to one of `forced.names`, valid JSON that
    matches the function's parameters."""
    variants = []
    for tool in tools:
        function = tool["function"]
        if function.get("name") not in forced.names:
            continue
        parameters = closed(function.get("parameters") or {"type": "object", "properties": {}})
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"const": function["name"]}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema = {"anyOf": variants, "x-guidance": COMPACT_JSON}
    start = "call (" + json.dumps("\n") + " call)*" if forced.parallel else "call"
    return (
        "%llguidance {}\n"
        f"start: {start}\n"
        f"call: {json.dumps(CALL_OPEN)} body {json.dumps(CALL_CLOSE)}\n"
        f"body: %json {json.dumps(schema)}\n"
    )


def closed(schema: Any) -> Any:
    """The schema with objects that list their properties taking no others unless it says so (OpenAI's
    strict mode): a forced call carries the declared parameters, and a weak model cannot add keys forever."""
    if isinstance(schema, list):
        return [closed(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: closed(v) if k not in ("properties", "enum", "const", "default", "examples") else v
           for k, v in schema.items()}  # fmt: skip
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {k: closed(v) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def constrain(body: dict[str, Any], tools: list[dict[str, Any]], forced: ForcedChoice) -> dict[str, Any]:
    """The request without `tools` (llama.cpp refuses a grammar beside them), the tools handed to the
    template instead, and the grammar that makes the reply a call."""
    out = {k: v for k, v in body.items() if k not in ("tools", "tool_choice", "parallel_tool_calls")}
    out.pop("response_format", None)  # the call is the reply's format; llama.cpp refuses two
    out.pop("ignore_eos", None)  # the reply ends where the grammar does
    kwargs = out.get("chat_template_kwargs")
    out["chat_template_kwargs"] = {**(kwargs if isinstance(kwargs, dict) else {}), "tools": tools}
    out["grammar"] = call_grammar(tools, forced)
    return out


# ---- the reply back into calls ----------------------------------------------------------------------
@dataclass
class CallStart:
    index: int
    name: str


@dataclass
class CallArguments:
    index: int
    delta: str


@dataclass
class CallEnd:
    index: int
    arguments: str


CallEvent = CallStart | CallArguments | CallEnd
_HEAD = re.compile(r'\s*<tool_call>\s*\{\s*"name"\s*:\s*("(?:[^"\\]|\\.)*")\s*,\s*"arguments"\s*:\s*')
_TAIL = re.compile(r"\s*\}\s*</tool_call>")


@dataclass
class ToolCallParser:
    """Reads `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` calls as their text arrives.

    It follows JSON nesting only as far as needed to see where the arguments end (strings and escapes
    included), and hands on argument text as it comes, so calls stream as OpenAI streams them.
    """

    text: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)  # (name, arguments) of finished calls
    _state: str = "head"  # head: before a call's arguments; args: inside them; tail: after them
    _depth: int = 0
    _in_string: bool = False
    _escaped: bool = False
    _started: bool = False  # the arguments' value has begun (whitespace before it is not part of it)
    _args: list[str] = field(default_factory=list)
    _name: str = ""

    def feed(self, text: str) -> list[CallEvent]:
        self.text += text
        events: list[CallEvent] = []
        while self._step(events):
            pass
        return events

    @property
    def index(self) -> int:
        return len(self.calls)

    @property
    def open_call(self) -> tuple[str, str] | None:
        """The call being written when the text ended (cut off by max_tokens), if any."""
        return (self._name, "".join(self._args)) if self._state != "head" else None

    def _step(self, events: list[CallEvent]) -> bool:
        if self._state == "head":
            m = _HEAD.match(self.text)
            if not m:
                return False
            self._name = json.loads(m.group(1))
            self.text, self._state, self._args, self._started = self.text[m.end() :], "args", [], False
            events.append(CallStart(self.index, self._name))
            return True
        if self._state == "args":
            end = self._scan()
            taken, self.text = self.text[:end], self.text[end:]
            if not self._started:
                taken = taken.lstrip()
            if taken:
                self._started = True
                self._args.append(taken)
                events.append(CallArguments(self.index, taken))
            if self._started and self._depth == 0 and not self._in_string:
                self._state = "tail"
                return True
            return False
        m = _TAIL.match(self.text)
        if not m:
            return False
        arguments = "".join(self._args)
        events.append(CallEnd(self.index, arguments))
        self.calls.append((self._name, arguments))
        self.text, self._state = self.text[m.end() :], "head"
        return True

    def _scan(self) -> int:
        """How much of `text` belongs to the arguments (all of it, or up to the end of their value)."""
        for i, ch in enumerate(self.text):
            if not self._started and self._depth == 0 and ch.isspace():
                continue
            if self._in_string:
                if self._escaped:
                    self._escaped = False
                elif ch == "\\":
                    self._escaped = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1
            elif self._depth == 0 and not ch.isspace():
                # a scalar at the top (not an object): up to the next delimiter
                m = re.match(r"[^\s,}\]]+", self.text[i:])
                assert m is not None
                return i + m.end()
        return len(self.text)


def parse_calls(text: str) -> tuple[list[tuple[str, str]], tuple[str, str] | None]:
    """(finished calls, the call cut off at the end if any) of a whole reply."""
    parser = ToolCallParser()
    parser.feed(text)
    return parser.calls, parser.open_call


# ---- OpenAI chat completions ----------------------------------------------------------------------------
def chat_tool_call(index: int, call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def chat_reply(data: dict[str, Any]) -> dict[str, Any]:
    """A non-streamed chat completion whose text is calls, with the calls as `tool_calls`."""
    for choice in data.get("choices", []):
        message = choice.get("message") or {}
        calls, cut = parse_calls(message.get("content") or "")
        if cut is not None:
            calls.append(cut)
        message["tool_calls"] = [
            {k: v for k, v in chat_tool_call(i, new_id("call_"), n, a).items() if k != "index"}
            for i, (n, a) in enumerate(calls)
        ]
        message["content"] = None
        if choice.get("finish_reason") != "length":
            choice["finish_reason"] = "tool_calls"
    return data


class ChatCallStream:
    """Rewrites a streamed chat completion: its content deltas become `tool_calls` deltas."""

    def __init__(self) -> None:
        self.parser = ToolCallParser()
        self.ids: dict[int, str] = {}

    def __call__(self, event: tuple[str | None, Any]) -> Iterator[tuple[str | None, Any]]:
        name, data = event
        if not isinstance(data, dict) or not data.get("choices"):
            yield event  # usage-only chunks, [DONE], errors
            return
        choice = data["choices"][0]
        delta = choice.get("delta") or {}
        calls = [self._delta(e) for e in self.parser.feed(delta.get("content") or "")]
        calls = [c for c in calls if c is not None]
        finish = choice.get("finish_reason")
        if finish is not None and finish != "length":
            finish = "tool_calls"
        if not calls and finish is None and "role" not in delta:
            return  # text held back until it is a call
        out_delta: dict[str, Any] = {k: v for k, v in delta.items() if k not in ("content", "tool_calls")}
        if calls:
            out_delta["tool_calls"] = calls
        yield name, {**data, "choices": [{**choice, "delta": out_delta, "finish_reason": finish}]}

    def _delta(self, event: CallEvent) -> dict[str, Any] | None:
        if isinstance(event, CallStart):
            self.ids[event.index] = new_id("call_")
            return chat_tool_call(event.index, self.ids[event.index], event.name, "")
        if isinstance(event, CallArguments):
            return {"index": event.index, "function": {"arguments": event.delta}}
        return None


async def forward_chat(request: Request, path: str = "/v1/chat/completions") -> Response:
    """A chat completion: a forced tool choice constrained as above, any other request forwarded as it came."""
    if b'"tool_choice"' not in await request.body():  # most requests: no second parse of the body
        return await forward(request, path, "chat")
    body = await json_body(request)
    tools, model = chat_tools(body), body.get("model")
    forced = forced_choice(body.get("tool_choice"), tools, body.get("parallel_tool_calls"))
    if forced is None or not isinstance(model, str) or not forcing_applies(request.app.state.manager, model):
        return await forward(request, path, "chat")
    return await forward_rewritten(
        request, path, constrain(body, tools, forced), on_json=chat_reply, on_event=ChatCallStream
    )
