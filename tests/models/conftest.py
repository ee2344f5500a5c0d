"""Fixtures of the models tests: the encoder GGUFs (tests/models/encoder_fixtures.py)."""

from __future__ import annotations

from tests.models.encoder_fixtures import minilm_dir, minilm_gguf, reranker_gguf

__all__ = ["minilm_dir", "minilm_gguf", "reranker_gguf"]  # pytest finds fixtures by these names
