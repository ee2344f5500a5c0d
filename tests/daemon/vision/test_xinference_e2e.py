"""The synthetic Qwen2-VL pair through a real Xinference (xinference-local, auth off, temp home): the
registration and launch kwargs the daemon uses for vision models, and image chat through the model's
llama-server and Xinference's REST API, token for token as llama.cpp driven directly."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from tests.daemon.vision.imagefiles import chat, image_part, png_url
from tests.fixtures.vision import image_tokens, write_qwen2vl_pair

pytestmark = pytest.mark.e2e

CAP = 256
MARKERS = 2  # <|vision_start|>, <|vision_end|>
SIZE = "0_000205"  # what qwendesk's size_in_billions gives the tiny text model; any size works


def registration(model: Path, mmproj: Path, name: str = "qwen2-vl-tiny", family: str = "qwen2-vl-instruct"):
    """The custom-LLM JSON for a vision pair: a built-in vision family, the GGUF's own template."""
    return {
        "version": 2,
        "model_name": name,
        "model_lang": ["en", "zh"],
        "model_ability": ["chat", "vision"],
        "model_family": family,  # "vision" needs a built-in vision family (Xinference answers 400 otherwise)
        "chat_template": "",  # "" = llama.cpp renders tokenizer.chat_template from the GGUF
        "context_length": 4096,
        "model_specs": [
            {
                "model_format": "ggufv2",
                "model_size_in_billions": SIZE,
                "quantization": "Q8_0",
                "model_file_name_template": model.name,
                "model_uri": str(model.parent),
                "multimodal_projectors": [mmproj.name],  # informational; the launch kwarg decides
            }
        ],
    }


@pytest.fixture(scope="module")
def xinference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    home = tmp_path_factory.mktemp("xinference-home")
    port = free_port()
    env = {
        **os.environ,
        "XINFERENCE_HOME": str(home),
        "XINFERENCE_AUTH_ADVANCED": "0",
        "HF_HUB_OFFLINE": "1",
        "XINFERENCE_MODEL_SRC": "huggingface",
        "XINFERENCE_ENABLE_VIRTUAL_ENV": "0",
        "XINFERENCE_DISABLE_METRICS": "1",
    }
    log = (home / "xinference.out").open("w")
    exe = str(Path(sys.executable).parent / "xinference-local")
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=180)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if client.get("/v1/models").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (home / "xinference.out").read_text()[-3000:]
            assert time.monotonic() < deadline, "xinference-local did not answer within 180 s"
            time.sleep(0.5)
        yield client
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)  # the whole group: supervisor, worker and model processes
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_qwen2vl_pair(tmp_path_factory.mktemp("models"))


def register(client: httpx.Client, spec: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec), "persist": True})


@pytest.fixture(scope="module")
def engine(xinference: httpx.Client, pair: tuple[Path, Path]) -> Iterator[httpx.Client]:
    """The model launched with its projector and a token cap; a client for its own llama-server."""
    model, mmproj = pair
    assert register(xinference, registration(model, mmproj)).status_code == 200
    port, key = free_port(), "sk-" + secrets.token_hex(16)
    launch = {
        "model_uid": "vision-test",
        "model_name": "qwen2-vl-tiny",
        "model_engine": "llama.cpp",
        "model_format": "ggufv2",
        "model_size_in_billions": SIZE,
        "quantization": "Q8_0",
        "n_ctx": 4096,
        "n_parallel": 1,
        "n_gpu_layers": 0,
        "cache_ram_mib": 0,
        "multimodal_projector": str(mmproj),  # absolute, or a name relative to the model's folder
        "image_max_tokens": CAP,  # passed through to CommonParams
        "port": port,
        "api_keys": [key],
    }
    resp = xinference.post("/v1/models", json=launch)
    assert resp.status_code == 200, resp.text
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=120, headers={"Authorization": f"Bearer {key}"}
    )
    yield client
    client.close()
    xinference.delete("/v1/models/vision-test")


def usage(resp: httpx.Response) -> int:
    assert resp.status_code == 200, resp.text
    return resp.json()["usage"]["prompt_tokens"]


def body(content_body: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**content_body, "model": "vision-test", "max_tokens": 4, "temperature": 0, **extra}


def test_vision_needs_a_builtin_vision_family(xinference: httpx.Client, pair: tuple[Path, Path]) -> None:
    for family in ("qwen2.5-instruct", "custom-qwen2vl"):
        resp = register(xinference, registration(*pair, name=f"bad-{family}", family=family))
        assert resp.status_code == 400 and "must be one of the following" in resp.text


def test_registered_with_the_vision_ability(xinference: httpx.Client, engine: httpx.Client) -> None:
    spec = xinference.get("/v1/model_registrations/LLM/qwen2-vl-tiny").json()
    assert spec["model_ability"] == ["chat", "vision"] and spec["chat_template"] == ""
    assert spec["model_family"] == "qwen2-vl-instruct"


@pytest.mark.parametrize(("w", "h"), [(64, 64), (640, 480), (2000, 1500)])
def test_image_tokens_through_the_models_llama_server(engine: httpx.Client, w: int, h: int) -> None:
    base = usage(engine.post("/v1/chat/completions", json=body(chat())))
    added = usage(engine.post("/v1/chat/completions", json=body(chat(image_part(png_url(w, h)))))) - base
    assert added == image_tokens(w, h, max_tokens=CAP) + MARKERS


def test_image_tokens_through_xinference_rest(xinference: httpx.Client, engine: httpx.Client) -> None:
    base = usage(xinference.post("/v1/chat/completions", json=body(chat())))
    added = (
        usage(xinference.post("/v1/chat/completions", json=body(chat(image_part(png_url(640, 480)))))) - base
    )
    assert added == image_tokens(640, 480, max_tokens=CAP) + MARKERS


def test_image_reply_streams(engine: httpx.Client) -> None:
    req = body(
        chat(image_part(png_url(320, 240))), stream=True, stream_options={"include_usage": True}, max_tokens=6
    )
    with engine.stream("POST", "/v1/chat/completions", json=req) as resp:
        assert resp.status_code == 200
        lines = [line[len("data: ") :] for line in resp.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    chunks = [json.loads(line) for line in lines[:-1]]
    assert sum(1 for c in chunks if c.get("choices") and c["choices"][0]["delta"].get("content")) >= 3
    base = usage(engine.post("/v1/chat/completions", json=body(chat())))
    assert chunks[-1]["usage"]["prompt_tokens"] - base == image_tokens(320, 240) + MARKERS
