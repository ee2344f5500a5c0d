"""Telling embedding GGUFs from chat GGUFs, and the registration an embedding model gets."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from qwendesk.models.errors import ModelFileError
from qwendesk.models.families import (
    POOLING_CLS,
    POOLING_LAST,
    POOLING_MEAN,
    embedding_pooling,
    is_embedding,
    registration_for,
)
from qwendesk.models.gguf_info import read_gguf
from tests.fixtures.synthetic import SHAPES, write_qwen_gguf


@pytest.fixture(scope="module")
def embed_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Qwen3-Embedding-style GGUF: qwen3 arch, pooling last, tied embeddings, chat template kept."""
    return write_qwen_gguf(
        tmp_path_factory.mktemp("embed") / "qwen3-embedding-tiny.gguf", arch="qwen3", pooling_type="last"
    )


def test_qwen3_embedding_layout_is_read_and_detected(embed_gguf: Path, qwen3_gguf: Path) -> None:
    info = read_gguf(embed_gguf)
    assert info.architecture == "qwen3" and info.pooling_type == POOLING_LAST
    assert info.chat_template  # like the real files: a template does not make it a chat model
    assert not any(name == "output.weight" for name in _tensor_names(embed_gguf))  # no LM head
    reg = registration_for(info)
    assert (reg.kind, reg.embedding, reg.chat, reg.abilities) == ("embedding", True, False, ("embed",))
    assert reg.dimensions == SHAPES["tiny"].hidden == info.embedding_length
    assert reg.pooling_type == POOLING_LAST and reg.context_length == SHAPES["tiny"].context

    chat = read_gguf(qwen3_gguf)  # the same architecture without a pooling type: a chat model
    assert chat.pooling_type is None and not is_embedding(chat)
    assert registration_for(chat).kind == "chat"


def _tensor_names(path: Path) -> list[str]:
    from gguf import GGUFReader

    return [t.name for t in GGUFReader(path).tensors]


@pytest.mark.parametrize(
    ("changes", "embedding", "pooling"),
    [
        ({"architecture": "bert", "pooling_type": None}, True, POOLING_MEAN),  # encoder: mean by default
        ({"architecture": "nomic-bert", "pooling_type": POOLING_CLS}, True, POOLING_CLS),  # the file's own
        ({"architecture": "jina-bert-v2", "pooling_type": 0}, True, POOLING_MEAN),  # none is not servable
        ({"architecture": "qwen3", "pooling_type": POOLING_MEAN}, True, POOLING_MEAN),
        ({"architecture": "qwen3", "pooling_type": 0}, False, None),  # explicit "none": not an embedder
        ({"architecture": "llama", "pooling_type": None, "general_type": "embedding"}, True, POOLING_LAST),
        ({"architecture": "llama", "pooling_type": None, "metadata": {"general.tags": ["Sentence-Similarity"]}},
         True, POOLING_LAST),
        ({"architecture": "llama", "pooling_type": None, "metadata": {"general.tags": ["text-generation"]}},
         False, None),
        ({"architecture": "pangu-embedded", "pooling_type": None}, False, None),  # a chat model despite its name
    ],
)  # fmt: skip
def test_detection_and_pooling(embed_gguf: Path, changes: dict, embedding: bool, pooling: int | None) -> None:
    info = replace(read_gguf(embed_gguf), **changes)
    assert is_embedding(info) is embedding
    reg = registration_for(info)
    assert reg.embedding is embedding
    if embedding:
        assert embedding_pooling(info) == reg.pooling_type == pooling


def test_rerankers_audio_decoders_and_sizeless_embedders_are_clear_errors(embed_gguf: Path) -> None:
    info = read_gguf(embed_gguf)
    with pytest.raises(ModelFileError, match="reranker"):
        registration_for(replace(info, pooling_type=4))
    with pytest.raises(ModelFileError, match="cannot serve"):
        registration_for(replace(info, architecture="wavtokenizer-dec"))
    with pytest.raises(ModelFileError, match="embedding_length"):
        registration_for(replace(info, embedding_length=None))


def test_synthetic_pooling_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pooling_type"):
        write_qwen_gguf(tmp_path / "x.gguf", arch="qwen3", pooling_type="rank")
    assert not list(tmp_path.glob("*.gguf"))
    mean = read_gguf(write_qwen_gguf(tmp_path / "m.gguf", arch="qwen2", pooling_type="mean"))
    assert mean.pooling_type == POOLING_MEAN and "Embedding" in (mean.name or "")
