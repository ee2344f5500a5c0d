"""registration_for: the family, template and abilities each kind of GGUF is registered with."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from qwendesk.models.errors import ModelFileError
from qwendesk.models.families import (
    BUILTIN_FAMILIES,
    POOLING_RANK,
    is_embedding,
    is_reranker,
    registration_for,
)
from qwendesk.models.gguf_info import GGUFInfo, read_gguf


def _xinference_catalog() -> dict[str, dict]:
    root = Path(next(iter(importlib.util.find_spec("xinference").submodule_search_locations)))
    families = {}
    for f in (root / "model/llm/models").glob("*.json"):
        data = json.loads(f.read_text())
        for obj in data if isinstance(data, list) else [data]:
            families[obj["model_name"]] = obj
    return families


def test_builtin_families_match_xinference() -> None:
    """Our table of families and abilities is what the installed Xinference ships."""
    catalog = _xinference_catalog()
    for name, abilities in BUILTIN_FAMILIES.items():
        assert name in catalog, name
        assert set(catalog[name]["model_ability"]) == abilities, name
        if "tools" in abilities:  # the REST gate only lets tool-parser families through
            assert catalog[name].get("tool_parser"), name
        assert catalog[name].get("chat_template"), name


def _as(info: GGUFInfo, **changes) -> GGUFInfo:
    return replace(info, **changes)


def test_qwen2_with_template(qwen2_gguf: Path) -> None:
    reg = registration_for(read_gguf(qwen2_gguf))
    assert (reg.model_family, reg.chat_template, reg.abilities) == ("qwen2.5-instruct", "", ("chat", "tools"))
    assert reg.context_length == 4096 and reg.chat


def test_qwen3_with_template(qwen3_gguf: Path) -> None:
    reg = registration_for(read_gguf(qwen3_gguf))
    assert (reg.model_family, reg.chat_template, reg.abilities) == ("qwen3", "", ("chat", "tools"))


def test_qwen_without_template_uses_chatml(qwen2_gguf: Path) -> None:
    reg = registration_for(_as(read_gguf(qwen2_gguf), chat_template=None))
    assert (reg.chat_template, reg.abilities) == ("chatml", ("chat",))  # llama.cpp's chatml has no tools


def test_template_without_tools(qwen2_gguf: Path) -> None:
    info = _as(read_gguf(qwen2_gguf), chat_template="{{ messages[0]['content'] }}")
    assert registration_for(info).abilities == ("chat",)


def test_smollm2_is_safe_custom_family(smollm2_gguf: Path) -> None:
    reg = registration_for(read_gguf(smollm2_gguf))
    assert reg.model_family == "custom-llama"
    assert reg.model_family not in _xinference_catalog()  # so it is never turned into a template
    assert (reg.chat_template, reg.abilities, reg.context_length) == ("", ("chat",), 8192)


def test_unknown_template_means_generate_only(smollm2_gguf: Path) -> None:
    reg = registration_for(_as(read_gguf(smollm2_gguf), chat_template=None, architecture="gemma2"))
    assert (reg.chat_template, reg.abilities) == (None, ("generate",))


def test_llama_with_tools_template(smollm2_gguf: Path) -> None:
    info = _as(read_gguf(smollm2_gguf), chat_template="{% if tools %}{{ tools | tojson }}{% endif %}")
    reg = registration_for(info)
    assert (reg.model_family, reg.abilities) == ("llama-3.1-instruct", ("chat", "tools"))


@pytest.mark.parametrize(
    ("arch", "name", "family"),
    [("qwen2vl", "Qwen2.5 VL 3B Instruct", "qwen2.5-vl-instruct"), ("qwen2vl", "Qwen2 VL 2B", "qwen2-vl-instruct"),
     ("qwen3vl", "Qwen3 VL 4B", "Qwen3-VL-Instruct")],
)  # fmt: skip
def test_vision(arch: str, name: str, family: str, qwen2_gguf: Path) -> None:
    info = _as(read_gguf(qwen2_gguf), architecture=arch, name=name, chat_template="{{ x }}")
    reg = registration_for(info, has_mmproj=True)
    assert reg.model_family == family and "vision" in reg.abilities
    text_only = registration_for(info)  # no projector: a text model, never a vision family
    assert "vision" not in text_only.abilities
    assert text_only.model_family in ("qwen2.5-instruct", "qwen3")


def test_embedding_and_projector(smollm2_gguf: Path) -> None:
    info = read_gguf(smollm2_gguf)
    reg = registration_for(_as(info, architecture="nomic-bert", chat_template=None))
    assert reg.embedding and not reg.chat
    with pytest.raises(ModelFileError, match="projector"):
        registration_for(_as(info, architecture="clip", general_type="mmproj"))


# ---- rerankers -------------------------------------------------------------------------------------
def test_reranker_fixture_registers_as_reranker(reranker_gguf: Path) -> None:
    info = read_gguf(reranker_gguf)
    assert (info.architecture, info.pooling_type) == ("bert", POOLING_RANK)
    assert is_reranker(info) and not is_embedding(info)
    reg = registration_for(info)
    assert (reg.kind, reg.abilities, reg.rerank, reg.embedding, reg.chat) == (
        "rerank",
        ("rerank",),
        True,
        False,
        False,
    )
    assert (reg.model_family, reg.chat_template, reg.pooling_type) == (
        "custom-bert-rerank",
        None,
        POOLING_RANK,
    )
    assert reg.context_length == info.context_length


def _without(info: GGUFInfo, key: str) -> dict:
    return {k: v for k, v in info.metadata.items() if k != key}


def test_reranker_signals(reranker_gguf: Path) -> None:
    """Rank pooling, else one classifier label, else (older encoder files) 'rerank' in the name."""
    info = read_gguf(reranker_gguf)
    no_pooling = _as(info, pooling_type=None)
    assert is_reranker(no_pooling)  # bge-reranker as llama.cpp converts it: labels, no pooling type
    bare = _as(no_pooling, metadata=_without(info, "bert.classifier.output_labels"))
    assert is_reranker(bare)  # the file name says reranker
    plain = _as(bare, name="tiny-bert", path=info.path.with_name("tiny-bert-f32.gguf"))
    assert not is_reranker(plain) and registration_for(plain).kind == "embedding"
    named = _as(plain, name="bge-reranker-v2-m3")
    assert registration_for(named).kind == "rerank"
    two_labels = _as(plain, metadata={**plain.metadata, "bert.classifier.output_labels": ["neg", "pos"]})
    assert not is_reranker(two_labels)  # a classifier with several labels is not a relevance scorer


def test_qwen3_reranker_needs_its_rerank_prompt(qwen3_gguf: Path) -> None:
    info = _as(read_gguf(qwen3_gguf), pooling_type=POOLING_RANK)
    with pytest.raises(ModelFileError, match="reranker without its rerank prompt .*convert_hf_to_gguf"):
        registration_for(info)
    template = "<|im_start|>system\nJudge ...<Query>: {query}\n<Document>: {document}<|im_end|>"
    reg = registration_for(_as(info, metadata={**info.metadata, "tokenizer.chat_template.rerank": template}))
    assert (reg.kind, reg.model_family, reg.chat_template) == ("rerank", "custom-qwen3-rerank", None)
    assert not is_reranker(read_gguf(qwen3_gguf))  # the chat model itself
