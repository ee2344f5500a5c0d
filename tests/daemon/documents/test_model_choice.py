"""Which embedding model and reranker collections use: the setting, else the catalog's default, else any."""

from __future__ import annotations

from types import SimpleNamespace

from qwendesk.daemon.documents.model_choice import choose


def model(name: str, kind: str | None, file: str | None = None, error: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(name=name, kind=kind, file=f"/models/{file or name + '.gguf'}", error=error)


MODELS = [
    model("qwen2.5-1.5b-instruct-q4_k_m", "chat"),
    model("all-minilm-l6-v2-f16", "embedding"),
    model("qwen3-embedding-0.6b-q8_0", "embedding", "Qwen3-Embedding-0.6B-Q8_0.gguf"),
    model("bge-reranker-v2-m3-q4_k_m", "rerank"),
    model("broken", None, error="not a GGUF file"),
]


def test_the_catalog_default_first_then_the_first_by_name() -> None:
    assert (
        choose(MODELS, "embedding", None, "Qwen3-Embedding-0.6B-Q8_0.gguf").name
        == "qwen3-embedding-0.6b-q8_0"
    )
    assert choose(MODELS, "embedding", None, "other.gguf").name == "all-minilm-l6-v2-f16"
    assert choose(MODELS, "rerank", None, None).name == "bge-reranker-v2-m3-q4_k_m"


def test_none_found_says_so() -> None:
    chosen = choose(MODELS[:1], "embedding", None, "Qwen3-Embedding-0.6B-Q8_0.gguf")
    assert chosen.name is None and chosen.problem == "there is no embedding model in the models folders"


def test_the_setting_wins_and_none_turns_it_off() -> None:
    assert choose(MODELS, "embedding", "all-minilm-l6-v2-f16", "Qwen3-Embedding-0.6B-Q8_0.gguf").name == (
        "all-minilm-l6-v2-f16"
    )
    assert choose(MODELS, "embedding", "none", None) == choose(MODELS, "rerank", "Off", None)
    assert choose(MODELS, "embedding", "none", None).name is None
    assert choose(MODELS, "embedding", "none", None).problem is None
    wrong = choose(MODELS, "embedding", "qwen2.5-1.5b-instruct-q4_k_m", None)
    assert wrong.name is None and "is not an embedding model: chat" in (wrong.problem or "")
    missing = choose(MODELS, "rerank", "nope", None)
    assert missing.name is None and "nope (setting `rerank_model`) is not in the models folders" in (
        missing.problem or ""
    )
