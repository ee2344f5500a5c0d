"""The Ollama-compatible app's own routes over a stand-in manager (generation is in test_ollama_e2e)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import NotFound
from qwendesk.daemon.lifecycle.entry import ModelEntry
from qwendesk.daemon.routes.ollama import create_ollama_app
from qwendesk.models.folder import scan
from tests.models.encoder_fixtures import write_reranker_gguf


class Manager:
    """What the Ollama routes read of the manager: the model table and settings."""

    def __init__(self, folder: Path) -> None:
        self.settings = load_settings(flags={"ollama_port": 11434}, env={})
        self.models = {
            name: ModelEntry(files) for name, files in scan([folder], now=time.time() + 60).items()
        }

    def views(self) -> list[Any]:
        return [self.models[n].view() for n in sorted(self.models)]

    def find(self, name: str) -> ModelEntry:
        if name not in self.models:
            raise NotFound(f"No model named '{name}'.")
        return self.models[name]


@pytest.fixture
def client(tmp_path: Path, qwen2_gguf: Path) -> TestClient:
    (tmp_path / "chat-q8_0.gguf").write_bytes(qwen2_gguf.read_bytes())
    write_reranker_gguf(tmp_path / "rr-f32.gguf")
    manager = Manager(tmp_path)
    app = create_ollama_app(manager.settings, manager)  # type: ignore[arg-type]
    with TestClient(app, base_url="http://127.0.0.1:11434") as c:
        yield c


def test_listing_show_and_probes(client: TestClient) -> None:
    assert client.get("/").text == "Ollama is running"
    assert client.get("/api/version").json()["version"].count(".") == 2
    assert [m["name"] for m in client.get("/api/tags").json()["models"]] == [
        "chat-q8_0:latest"
    ]  # no reranker
    shown = client.post("/api/show", json={"model": "chat-q8_0:latest"}).json()
    assert shown["details"]["family"] == "qwen2" and "tools" in shown["capabilities"]
    assert client.post("/api/show", json={"name": "chat-q8_0"}).status_code == 200  # older clients say `name`
    assert client.get("/api/ps").json() == {"models": []}


def test_errors_are_ollama_shaped(client: TestClient) -> None:
    r = client.post("/api/show", json={"model": "nope:latest"})
    assert r.status_code == 404 and r.json() == {"error": "model 'nope:latest' not found; `qwendesk models` lists "
                                                          "what is available"}  # fmt: skip
    r = client.post("/api/chat", json={"messages": []})
    assert r.status_code == 400 and r.json() == {"error": "model is required"}
    r = client.post("/api/pull", json={"model": "llama3"})
    assert r.status_code == 501 and "qwendesk pull" in r.json()["error"]
    assert client.post("/api/nothing", json={}).status_code == 404
    assert client.post("/api/embed", json={"model": "chat-q8_0", "input": 3}).status_code == 400
