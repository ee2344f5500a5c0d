"""A reranker GGUF is registered and launched as Xinference's "rerank" model type, with rank pooling, and
serves /v1/rerank only (against a fake Xinference; the real one is in test_rerank_e2e)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from qwendesk.daemon.errors import BadRequest
from qwendesk.daemon.lifecycle.launch import launch_plan
from qwendesk.daemon.schemas import StartRequest
from qwendesk.daemon.xinference.client import MODEL_TYPES
from qwendesk.daemon.xinference.registration import model_type, registration_spec, reserved_names
from qwendesk.models.families import POOLING_RANK
from qwendesk.models.folder import model_name_for, scan
from tests.daemon.lifecycle.test_manager import folder, make  # noqa: F401  (fixture)
from tests.models.encoder_fixtures import write_reranker_gguf


@pytest.fixture
def with_reranker(folder: Path) -> Path:  # noqa: F811
    write_reranker_gguf(folder / "tiny-bert-reranker-f32.gguf")
    return folder


def test_rerank_registration_and_launch_plan(with_reranker: Path) -> None:
    found = scan([with_reranker], now=time.time() + 60)
    rr = found["tiny-bert-reranker-f32"]
    assert model_type(rr) == "rerank" and "rerank" in MODEL_TYPES
    spec = registration_spec(rr)
    assert spec["model_name"] == "tiny-bert-reranker-f32" and spec["max_tokens"] == 128
    assert spec["model_specs"][0]["model_format"] == "ggufv2" and "dimensions" not in spec
    assert spec["type"] == "normal"  # else Xinference looks for a Hugging Face tokenizer to guess it
    assert "model_ability" not in spec and "model_family" not in spec  # not an LLM registration

    m = make(with_reranker)
    plan = launch_plan(m.settings, m.accel, rr, StartRequest(), direct=True)
    assert (plan.model_type, plan.model_size, plan.quantization) == ("rerank", None, "F32")
    kwargs = plan.engine_kwargs
    assert kwargs["pooling_type"] == POOLING_RANK
    # query + document are scored in one batch: batch sizes are the (capped) context
    assert plan.n_ctx == 128 and kwargs["n_batch"] == kwargs["n_ubatch"] == 128
    assert kwargs["port"] == plan.engine.port and kwargs["api_keys"] == [plan.engine.key]


def test_builtin_reranker_names_are_reserved() -> None:
    assert "bge-reranker-v2-m3" in reserved_names()
    assert model_name_for("bge-reranker-v2-m3.gguf", reserved_names()) == "bge-reranker-v2-m3-gguf"


async def test_only_rerank_requests_reach_a_reranker(with_reranker: Path) -> None:
    m = make(with_reranker)
    await m.apply_scan(scan([with_reranker], now=time.time() + 60))
    async with m.using("tiny-bert-reranker-f32", "rerank", "/v1/rerank") as endpoint:
        assert endpoint.name == "tiny-bert-reranker-f32"
    launched = [c for c in m.supervisor.fake.calls if c[0] == "launch"]
    assert launched[-1][2]["model_type"] == "rerank" and ("register", "rerank", "tiny-bert-reranker-f32") in (
        m.supervisor.fake.calls
    )
    for service, path, words in (
        ("chat", "/v1/chat/completions", "is a reranker: it serves /v1/rerank only"),
        ("embeddings", "/v1/embeddings", "does not serve embeddings: it is a reranker"),
    ):
        with pytest.raises(BadRequest, match=words):
            async with m.using("tiny-bert-reranker-f32", service, path):
                pass
    with pytest.raises(BadRequest, match="does not rerank: it is a chat model"):
        async with m.using("chat", "rerank", "/v1/rerank"):
            pass
