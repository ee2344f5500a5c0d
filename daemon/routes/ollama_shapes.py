"""Ollama's request and reply shapes, translated to and from the OpenAI API the engines speak.

Pure functions and stream rewriters (no I/O): `ollama.py` routes requests through them. Names are shown as
Ollama apps show them, `<qwendesk name>:latest`; a request may name a model with or without the tag.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from ..schemas import ModelView
from .relay import Event

TAG = "latest"
# Ollama's options that have an OpenAI (or llama.cpp) request field of the same meaning.
OPTION_FIELDS = {
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "seed": "seed",
    "stop": "stop", "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty", "repeat_last_n": "repeat_last_n", "typical_p": "typical_p",
    "mirostat": "mirostat", "mirostat_tau": "mirostat_tau", "mirostat_eta": "mirostat_eta",
    "num_keep": "n_keep",
    "ignore_eos": "ignore_eos",  # llama.cpp's own, for clients that know the engine
}  # fmt: skip
# qwendesk abilities -> Ollama capabilities (as /api/show lists them).
CAPABILITIES = {"chat": "completion", "generate": "completion", "tools": "tools", "vision": "vision",
                "embed": "embedding", "reasoning": "thinking"}  # fmt: skip


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def ollama_name(name: str) -> str:
    return f"{name}:{TAG}"


def model_candidates(requested: str) -> list[str]:
    """The qwendesk names a requested Ollama name may mean: as given, then without its tag."""
    names = [requested]
    if ":" in requested:
        names.append(requested.rsplit(":", 1)[0])
    return names


# ---- models -----------------------------------------------------------------------------------------------
def digest(view: ModelView) -> str:
    """A stable id for a model file (its path, size and time, not its bytes: hashing GBs per listing is
    too slow), in Ollama's hex digest form."""
    path = view.file
    try:
        stat = os.stat(path)
        key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        key = path
    return hashlib.sha256(key.encode()).hexdigest()


def modified_at(view: ModelView) -> str:
    try:
        mtime = os.stat(view.file).st_mtime
    except OSError:
        mtime = time.time()
    return datetime.fromtimestamp(mtime, timezone.utc).isoformat().replace("+00:00", "Z")


def details(view: ModelView) -> dict[str, Any]:
    family = view.architecture or "unknown"
    return {"parent_model": "", "format": "gguf", "family": family, "families": [family],
            "parameter_size": view.parameters or "", "quantization_level": view.quantization or ""}  # fmt: skip


def capabilities(view: ModelView) -> list[str]:
    caps = {CAPABILITIES[a] for a in view.abilities if a in CAPABILITIES}
    return sorted(caps)


def listed(view: ModelView) -> bool:
    """Models an Ollama app can use: chat and embedding models (rerankers and speech have no Ollama API)."""
    return bool(view.abilities) and "rerank" not in view.abilities and view.kind != "speech"


def tag_entry(view: ModelView) -> dict[str, Any]:
    """A model as /api/tags lists it."""
    name = ollama_name(view.name)
    return {"name": name, "model": name, "modified_at": modified_at(view), "size": view.size_bytes,
            "digest": digest(view), "details": details(view)}  # fmt: skip


def running_entry(view: ModelView, expires_in: float | None) -> dict[str, Any]:
    """A running model as /api/ps lists it (`expires_in`: seconds until the keep-alive stops it)."""
    expires = time.time() + (expires_in if expires_in is not None else 10 * 365 * 86400)
    return {**tag_entry(view), "expires_at": datetime.fromtimestamp(expires, timezone.utc).isoformat(),
            "size_vram": 0, "context_length": view.n_ctx or view.context_length or 0}  # fmt: skip


def show(view: ModelView, template: str | None) -> dict[str, Any]:
    """/api/show: details, model_info keys as Ollama names them, capabilities, the chat template."""
    arch = view.architecture or "unknown"
    info: dict[str, Any] = {
        "general.architecture": arch,
        "general.parameter_count": view.parameter_count or 0,
    }
    if view.context_length:
        info[f"{arch}.context_length"] = view.context_length
    return {
        "modelfile": f"# Served by qwendesk from {view.file}\nFROM {view.file}\n",
        "parameters": "",
        "template": template or "",
        "license": "",
        "details": details(view),
        "model_info": info,
        "capabilities": capabilities(view),
        "modified_at": modified_at(view),
    }


# ---- requests -----------------------------------------------------------------------------------------------
def sampling(request: dict[str, Any]) -> dict[str, Any]:
    """Ollama's `options` and `format` as OpenAI request fields."""
    out: dict[str, Any] = {}
    options = request.get("options") or {}
    for theirs, ours in OPTION_FIELDS.items():
        if options.get(theirs) is not None:
            out[ours] = options[theirs]
    predict = options.get("num_predict")
    if isinstance(predict, int) and predict >= 0:  # -1: no limit, -2: fill the context
        out["max_tokens"] = predict
    fmt = request.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"name": "format", "schema": fmt}}
    think = request.get("think")
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    return out


def image_part(data: str) -> dict[str, Any]:
    """An Ollama image (base64, no type) as an OpenAI image part with a data URL."""
    head = base64.b64decode(data[:16] + "=" * (-len(data[:16]) % 4), validate=False)[:4]
    mime = (
        "image/png"
        if head.startswith(b"\x89PNG")
        else "image/jpeg"
        if head.startswith(b"\xff\xd8")
        else "image/png"
    )
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}


def chat_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama messages as OpenAI's: images become content parts, tool calls get ids (Ollama has none) that
    the tool results after them answer, in order."""
    out: list[dict[str, Any]] = []
    pending: list[str] = []  # ids of calls not answered yet
    for n, message in enumerate(messages):
        role, content = message.get("role"), message.get("content") or ""
        entry: dict[str, Any] = {"role": role}
        images = message.get("images") or []
        entry["content"] = (
            [{"type": "text", "text": content}, *map(image_part, images)] if images else content
        )
        if role == "assistant" and message.get("tool_calls"):
            calls = []
            for i, call in enumerate(message["tool_calls"]):
                function = call.get("function") or {}
                arguments = function.get("arguments", {})
                call_id = call.get("id") or f"call_{n}_{i}"
                pending.append(call_id)
                calls.append({"id": call_id, "type": "function", "function": {
                    "name": function.get("name"),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}})  # fmt: skip
            entry["tool_calls"] = calls
        if role == "tool":
            entry["tool_call_id"] = message.get("tool_call_id") or (
                pending.pop(0) if pending else f"call_{n}"
            )
        out.append(entry)
    return out


def chat_request(request: dict[str, Any], model: str, stream: bool) -> dict[str, Any]:
    """/api/chat as an OpenAI chat completion request."""
    body: dict[str, Any] = {"model": model, "messages": chat_messages(request.get("messages") or []),
                            "stream": stream, **sampling(request)}  # fmt: skip
    if request.get("tools"):
        body["tools"] = request["tools"]
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


def generate_request(request: dict[str, Any], model: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """/api/generate as (path, OpenAI body): a chat turn with the model's template, or with `raw` a plain
    completion of the prompt."""
    prompt = request.get("prompt") or ""
    body: dict[str, Any] = {"model": model, "stream": stream, **sampling(request)}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if request.get("raw"):
        return "/v1/completions", {**body, "prompt": prompt}
    messages: list[dict[str, Any]] = []
    if request.get("system"):
        messages.append({"role": "system", "content": request["system"]})
    messages.append({"role": "user", "content": prompt, "images": request.get("images") or []})
    return "/v1/chat/completions", {**body, "messages": chat_messages(messages)}


# ---- replies ------------------------------------------------------------------------------------------------
def _calls(tool_calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI tool calls as Ollama's (arguments an object, not a string)."""
    out = []
    for call in tool_calls:
        function = call.get("function") or {}
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except ValueError:
            arguments = {}
        out.append({"function": {"name": function.get("name", ""), "arguments": arguments}})
    return out


def final_fields(
    usage: dict[str, Any], timings: dict[str, Any], started: float, reason: str
) -> dict[str, Any]:
    """The counts and durations (ns) Ollama ends a reply with; load_duration is the time not spent in the
    engine's prompt and generation (a model start, when there was one)."""
    total = int((time.monotonic() - started) * 1e9)
    prompt_ns = int(float(timings.get("prompt_ms") or 0) * 1e6)
    eval_ns = int(float(timings.get("predicted_ms") or 0) * 1e6)
    return {
        "done": True,
        "done_reason": reason,
        "total_duration": total,
        "load_duration": max(total - prompt_ns - eval_ns, 0),
        "prompt_eval_count": usage.get("prompt_tokens", 0),
        "prompt_eval_duration": prompt_ns,
        "eval_count": usage.get("completion_tokens", 0),
        "eval_duration": eval_ns,
    }


def done_reason(finish: str | None) -> str:
    return "length" if finish == "length" else "stop"


def reply(data: dict[str, Any], model: str, started: float, kind: str) -> dict[str, Any]:
    """A non-streamed OpenAI answer as Ollama's /api/chat (`kind` "chat") or /api/generate reply."""
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = message.get("content") if "message" in choice else choice.get("text")
    out: dict[str, Any] = {"model": model, "created_at": now_iso()}
    if kind == "chat":
        out["message"] = {"role": "assistant", "content": text or ""}
        if message.get("reasoning_content"):
            out["message"]["thinking"] = message["reasoning_content"]
        if message.get("tool_calls"):
            out["message"]["tool_calls"] = _calls(message["tool_calls"])
    else:
        out["response"] = text or ""
        if message.get("reasoning_content"):
            out["thinking"] = message["reasoning_content"]
    finish = done_reason(choice.get("finish_reason"))
    return {**out, **final_fields(data.get("usage") or {}, data.get("timings") or {}, started, finish)}


class ReplyStream:
    """A streamed OpenAI answer as Ollama's stream: one JSON object per piece of text, then a `done` one.

    Tool calls arrive in pieces in OpenAI's stream; Ollama sends each call whole, so they are gathered and
    sent in the last message.
    """

    def __init__(self, model: str, started: float, kind: str) -> None:
        self.model, self.started, self.kind = model, started, kind
        self.calls: dict[int, dict[str, Any]] = {}
        self.finish: str | None = None
        self.timings: dict[str, Any] = {}
        self.done = False

    def _line(self, text: str = "", thinking: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "created_at": now_iso()}
        if self.kind == "chat":
            out["message"] = {"role": "assistant", "content": text}
            if thinking:
                out["message"]["thinking"] = thinking
        else:
            out["response"] = text
            if thinking:
                out["thinking"] = thinking
        return out

    def __call__(self, event: Event) -> Iterator[Event]:
        _, data = event
        if self.done:
            return
        if not isinstance(data, dict):  # [DONE] without a usage chunk before it
            yield from self._end({})
            return
        if "error" in data:
            error = data["error"]
            self.done = True
            yield None, {"error": error.get("message") if isinstance(error, dict) else str(error)}
            return
        self.timings = data.get("timings") or self.timings
        for choice in data.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content") or choice.get("text") or ""
            thinking = delta.get("reasoning_content") or ""
            for call in delta.get("tool_calls") or []:
                self._gather(call)
            if text or thinking:
                yield None, {**self._line(text, thinking), "done": False}
            self.finish = choice.get("finish_reason") or self.finish
        if data.get("usage"):
            yield from self._end(data["usage"])

    def _gather(self, delta: dict[str, Any]) -> None:
        call = self.calls.setdefault(
            delta.get("index", len(self.calls)), {"function": {"name": "", "arguments": ""}}
        )
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def _end(self, usage: dict[str, Any]) -> Iterator[Event]:
        self.done = True
        line = self._line()
        if self.calls and self.kind == "chat":
            line["message"]["tool_calls"] = _calls([self.calls[i] for i in sorted(self.calls)])
        yield None, {**line, **final_fields(usage, self.timings, self.started, done_reason(self.finish))}


def embed_reply(data: dict[str, Any], model: str, started: float) -> dict[str, Any]:
    """/v1/embeddings' answer as /api/embed's."""
    vectors = [
        item.get("embedding", []) for item in sorted(data.get("data", []), key=lambda d: d.get("index", 0))
    ]
    total = int((time.monotonic() - started) * 1e9)
    return {"model": model, "embeddings": vectors, "total_duration": total, "load_duration": 0,
            "prompt_eval_count": (data.get("usage") or {}).get("prompt_tokens", 0)}  # fmt: skip
