"""Greedy parity: /v1/chat/completions returns exactly what llama.cpp itself produces for the same GGUF."""

from __future__ import annotations

import json
import queue
from pathlib import Path

import httpx
import pytest

from qwendesk.models.folder import model_name_for
from tests.conftest import SMOLLM2_NAME, DaemonProcess, link_model

pytestmark = pytest.mark.e2e

PROMPTS = {
    "en": [{"role": "user", "content": "Explain in two sentences why the sky is blue."}],
    "zh": [{"role": "user", "content": "请用两句话介绍一下北京。"}],
}
MAX_TOKENS = 40
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


class Reference:
    """xllamacpp's Server in this process: the GGUF's own template (jinja), greedy, one slot."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        from xllamacpp import CommonParams, Server

        params = CommonParams()
        params.model.path = str(path)
        params.use_jinja = True
        params.n_ctx = n_ctx
        params.n_parallel = 1
        params.n_gpu_layers = 0
        params.cpuparams.n_threads = n_threads
        params.cpuparams_batch.n_threads = n_threads
        self.server = Server(params)

    def chat(self, messages: list[dict], **extra: object) -> dict:
        results: queue.Queue = queue.Queue()
        body = {
            "messages": messages,
            "max_tokens": MAX_TOKENS,
            "temperature": 0,
            "top_k": 1,
            "stream": False,
            **extra,
        }
        self.server.handle_chat_completions(body, results.put)
        out = results.get(timeout=300)
        return json.loads(out) if isinstance(out, (str, bytes)) else out


def daemon_chat(daemon: DaemonProcess, model: str, messages: list[dict], **extra: object) -> dict:
    body = {
        "model": model,
        "messages": messages,
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "top_k": 1,
        **extra,
    }
    r = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=600)
    assert r.status_code == 200, r.text
    return r.json()


def check_parity(daemon: DaemonProcess, name: str, path: Path) -> None:
    daemon.client.start(name)
    view = daemon.model(name)
    threads = daemon.client.status()["accelerator"]["physical_cores"]
    ref = Reference(path, view["n_ctx"], daemon.settings.n_threads or threads)
    try:
        for lang, messages in PROMPTS.items():
            ours = daemon_chat(daemon, name, messages)
            theirs = ref.chat(messages)
            assert "error" not in theirs, theirs
            text = ours["choices"][0]["message"]["content"]
            assert text, f"{name}/{lang}: empty answer"
            assert text == theirs["choices"][0]["message"]["content"], f"{name}/{lang} differs"
            assert ours["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]
            assert ours["usage"]["completion_tokens"] == theirs["usage"]["completion_tokens"]
        # Tools and response_format reach llama.cpp untouched (Xinference's API refuses tools for
        # non-tool families): the answer is exactly what the engine gives for the same request.
        extras = {
            "tools": {"tools": [WEATHER_TOOL], "tool_choice": "auto"},
            "json": {"response_format": {"type": "json_object"}},
        }
        weather = [{"role": "user", "content": "What is the weather in Paris? Use the tool, answer in JSON."}]
        for what, extra in extras.items():
            ours = daemon_chat(daemon, name, weather, **extra)["choices"][0]
            theirs = ref.chat(weather, **extra)["choices"][0]
            assert ours["message"] == theirs["message"], f"{name}/{what} differs"
            assert ours["finish_reason"] == theirs["finish_reason"]
    finally:
        del ref


def test_greedy_parity_smollm2(daemon: DaemonProcess, smollm2_gguf: Path) -> None:
    check_parity(daemon, SMOLLM2_NAME, smollm2_gguf)


def test_greedy_parity_generated_qwen2(daemon: DaemonProcess, qwen2_gguf: Path) -> None:
    target = link_model(qwen2_gguf, daemon.models_dir)
    name = model_name_for(target)
    daemon.wait_for(lambda c: daemon.model(name).get("state") == "available", what=f"{name} to be listed")
    try:
        check_parity(daemon, name, qwen2_gguf)
    finally:
        daemon.client.stop(name)
