"""Embedding GGUFs end to end: a Qwen3-Embedding-style file in the folder of a real daemon is listed with
`embed`, registered in Xinference as an embedding model, served at /v1/embeddings (official openai SDK),
refused for chat, and unregistered when the file is deleted."""

from __future__ import annotations

import asyncio
import math

import httpx
import psutil
import pytest

from qwendesk.daemon.xinference.auth import CREDENTIALS_FILE, load_credentials
from qwendesk.daemon.xinference.client import XinferenceClient
from qwendesk.models.folder import model_name_for
from tests.conftest import SMOLLM2_NAME, DaemonProcess
from tests.daemon.xinference.probe import registrations
from tests.fixtures.synthetic import SHAPES, write_qwen_gguf

pytestmark = pytest.mark.e2e

FILE = "qwen3-embedding-tiny-q8_0.gguf"


def xinference_registrations(daemon: DaemonProcess, model_type: str) -> list[str]:
    """Custom registrations of `model_type` in the daemon's own Xinference, asked with its admin login."""
    endpoint = daemon.client.status()["supervisor"]["endpoint"]
    creds = load_credentials(daemon.settings.run_dir / CREDENTIALS_FILE)
    assert endpoint and creds, "the embedded Xinference is not running"

    async def ask() -> list[str]:
        client = XinferenceClient(endpoint, creds.api_key, credentials=(creds.username, creds.password))
        try:
            return await registrations(client, model_type)
        finally:
            await client.aclose()

    return asyncio.run(ask())


def close(a: list[float], b: list[float], tol: float = 1e-5) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def test_embedding_gguf_is_listed_served_refused_for_chat_and_unregistered(daemon: DaemonProcess) -> None:
    from openai import BadRequestError, OpenAI

    target = write_qwen_gguf(daemon.models_dir / FILE, arch="qwen3", pooling_type="last")
    name = model_name_for(target)
    dims = SHAPES["tiny"].hidden
    try:
        view = daemon.wait_for(lambda c: daemon.model(name), what="the embedding model to be listed")
        assert view["abilities"] == ["embed"] and view["error"] is None, view
        assert view["state"] == "available"

        client = OpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0, timeout=300)
        one = client.embeddings.create(model=name, input="hello world")  # started on demand
        assert one.model == name and len(one.data) == 1
        first = one.data[0].embedding
        assert len(first) == dims and one.data[0].index == 0
        assert all(math.isfinite(x) for x in first) and any(x != 0 for x in first)

        two = client.embeddings.create(model=name, input=["hello world", "what time is the weather"])
        assert [d.index for d in two.data] == [0, 1] and all(len(d.embedding) == dims for d in two.data)
        a, b = two.data[0].embedding, two.data[1].embedding
        # Different inputs give different vectors.
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 1e-3
        assert close(a, first)  # the same input gives the same vector, alone or in a batch
        assert close(client.embeddings.create(model=name, input="hello world").data[0].embedding, first)

        # The wire shape without the SDK's base64 default: plain floats, our name, usage.
        raw = httpx.post(
            daemon.url + "/v1/embeddings",
            json={"model": name, "input": ["hello world"], "encoding_format": "float"},
            timeout=120,
        )
        assert raw.status_code == 200, raw.text
        body = raw.json()
        assert body["object"] == "list" and body["model"] == name
        assert body["data"][0]["object"] == "embedding" and close(body["data"][0]["embedding"], first)
        assert body["usage"]["prompt_tokens"] > 0

        assert daemon.model(name)["state"] == "running"
        # Each running model (this one included) is served by its own llama-server, on our port and key.
        running = [m for m in daemon.client.models() if m["state"] == "running"]
        assert name in {m["name"] for m in running} and len(daemon.engines()) == len(running)
        assert name in xinference_registrations(daemon, "embedding")
        assert name not in xinference_registrations(daemon, "LLM")

        with pytest.raises(BadRequestError) as err:  # refused before anything reaches the engine
            client.chat.completions.create(model=name, messages=[{"role": "user", "content": "hi"}])
        assert "embedding model" in str(err.value)
        with pytest.raises(BadRequestError) as err:
            client.embeddings.create(model=SMOLLM2_NAME, input="hi")
        assert "does not serve embeddings" in str(err.value)
    finally:
        target.unlink(missing_ok=True)

    daemon.wait_for(lambda c: not daemon.model(name), what="the deleted model to be forgotten")
    assert name not in xinference_registrations(daemon, "embedding")

    def model_process_gone(_: object) -> bool:
        for p in daemon.tree():
            try:
                if name in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                    return False
            except psutil.NoSuchProcess:
                continue
        return True

    daemon.wait_for(model_process_gone, timeout=60, what="the embedding model's process to exit")
