"""Embedding models in the registry (spec, launch kwargs) and the Xinference client's requests for them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from qwendesk.daemon.accelerator import detect
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.lifecycle.launch import launch_plan
from qwendesk.daemon.schemas import StartRequest
from qwendesk.daemon.xinference.client import XinferenceClient
from qwendesk.daemon.xinference.registration import model_type, registration_spec, reserved_names
from qwendesk.models.folder import scan
from tests.fixtures.synthetic import SHAPES, write_qwen_gguf


@pytest.fixture
def folder(tmp_path: Path, qwen3_gguf: Path) -> Path:
    write_qwen_gguf(tmp_path / "Qwen3-Embedding-tiny-Q8_0.gguf", arch="qwen3", pooling_type="last")
    write_qwen_gguf(tmp_path / "split-embed.gguf", arch="qwen3", pooling_type="mean", split_max_tensors=12)
    (tmp_path / "chat.gguf").hardlink_to(qwen3_gguf)
    return tmp_path


def test_scan_lists_embedding_models_with_embed_and_their_spec(folder: Path) -> None:
    models = scan([folder])
    embed, split, chat = models["qwen3-embedding-tiny-q8_0"], models["split-embed"], models["chat"]
    assert embed.ok and embed.error is None and embed.view_fields()["abilities"] == ["embed"]
    assert (model_type(embed), model_type(split), model_type(chat)) == ("embedding", "embedding", "LLM")
    spec = registration_spec(embed)
    assert spec == {
        "version": 2,
        "model_name": "qwen3-embedding-tiny-q8_0",
        "dimensions": SHAPES["tiny"].hidden,
        "max_tokens": SHAPES["tiny"].context,
        "language": ["en", "zh"],
        "model_description": spec["model_description"],
        "model_specs": [
            {
                "model_format": "ggufv2",
                "quantization": "Q8_0",
                "model_file_name_template": "Qwen3-Embedding-tiny-Q8_0.gguf",
                "model_uri": str(folder.resolve()),
            }
        ],
    }
    shards = registration_spec(split)["model_specs"][0]
    assert shards["model_file_name_split_template"] == "split-embed-{part}.gguf"
    assert len(shards["quantization_parts"]["Q8_0"]) == len(split.files) > 1
    assert "model_ability" in registration_spec(chat) and "dimensions" not in registration_spec(chat)

    plans = {m.name: plan(m) for m in (embed, split, chat)}
    assert plans[embed.name].engine_kwargs["pooling_type"] == 3
    assert (plans[embed.name].model_type, plans[embed.name].quantization) == ("embedding", "Q8_0")
    assert plans[embed.name].model_size is None  # embedding registrations carry no size
    assert plans[split.name].engine_kwargs["pooling_type"] == 1
    assert "pooling_type" not in plans[chat.name].engine_kwargs


def plan(model, **options):
    return launch_plan(load_settings(env={}), detect(), model, StartRequest(**options), direct=False)


def test_embedding_launch_plan_fits_one_input_in_one_batch(folder: Path) -> None:
    embed = scan([folder])["qwen3-embedding-tiny-q8_0"]
    kwargs = plan(embed, n_ctx=2048, n_parallel=3).engine_kwargs
    assert (kwargs["n_ctx"], kwargs["n_parallel"], kwargs["n_batch"], kwargs["n_ubatch"]) == (
        3 * 2048,
        3,
        2048,
        2048,
    )
    capped = plan(embed, n_ctx=32768, n_parallel=2)  # trained for 4096
    kwargs = capped.engine_kwargs
    assert (kwargs["n_ctx"], kwargs["n_parallel"], kwargs["n_batch"], kwargs["n_ubatch"]) == (
        2 * 4096,
        2,
        4096,
        4096,
    )
    assert capped.n_ctx == 4096


def test_builtin_embedding_names_are_reserved() -> None:
    assert "qwen3-embedding-0.6b" in reserved_names() and "qwen3" in reserved_names()


async def test_client_registers_launches_and_unregisters_by_model_type() -> None:
    seen: list[tuple[str, str, dict | None]] = []

    def fake(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        seen.append((request.method, request.url.path, body))
        if request.url.path == "/token":
            return httpx.Response(200, json={"access_token": "jwt"})
        if request.method == "POST" and request.url.path == "/v1/models":
            return httpx.Response(200, json={"model_uid": body["model_uid"]})
        if request.method == "GET":
            return httpx.Response(
                200, json=[{"model_name": "e", "is_builtin": False}, {"model_name": "b", "is_builtin": True}]
            )
        return httpx.Response(200, json=None)

    client = XinferenceClient("http://x", credentials=("u", "p"), transport=httpx.MockTransport(fake))
    await client.register("embedding", {"model_name": "e"})
    uid = await client.launch(
        "e", "e", model_size=None, quantization="Q8_0", model_type="embedding", pooling_type=3
    )
    await client.unregister("embedding", "e")
    await client.register("LLM", {"model_name": "c"})
    await client.launch("c", "c", model_size="0_5", quantization="Q8_0")
    await client.aclose()

    calls = [(m, p) for m, p, _ in seen if p != "/token"]
    assert calls == [
        ("POST", "/v1/model_registrations/embedding"),
        ("POST", "/v1/models"),
        ("DELETE", "/v1/model_registrations/embedding/e"),
        ("POST", "/v1/model_registrations/LLM"),
        ("POST", "/v1/models"),
    ]
    launches = [b for m, p, b in seen if (m, p) == ("POST", "/v1/models")]
    assert uid == "e" and launches[0]["model_type"] == "embedding" and launches[0]["pooling_type"] == 3
    assert "model_size_in_billions" not in launches[0] and launches[0]["model_engine"] == "llama.cpp"
    assert launches[1]["model_type"] == "LLM" and launches[1]["model_size_in_billions"] == "0_5"
    with pytest.raises(ValueError, match="model_type"):
        await client.register("image", {"model_name": "r"})


@pytest.mark.e2e
def test_embedding_specs_pass_xinference_validation(folder: Path) -> None:
    """Xinference's own embedding schema accepts our JSON (slow: imports xinference)."""
    from xinference.model.embedding.custom import CustomEmbeddingModelFamilyV2

    for model in scan([folder]).values():
        if model_type(model) == "embedding":
            parsed = CustomEmbeddingModelFamilyV2.parse_raw(json.dumps(registration_spec(model)))
            assert parsed.dimensions == SHAPES["tiny"].hidden
            assert parsed.model_specs[0].model_format == "ggufv2"
