"""Helpers for the documents tests: a deterministic fake embedder and files written as settled."""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from pathlib import Path

import pytest

from qwendesk.daemon.documents.collection import Collection
from qwendesk.daemon.documents.errors import EmbeddingError


class FakeEmbedder:
    """Bag of hashed words in 64 dimensions: texts sharing words are near. Counts calls and texts."""

    def __init__(self, model_id: str = "fake-a", dim: int = 64) -> None:
        self.model_id = model_id
        self.dim = dim
        self.calls = 0
        self.texts: list[str] = []
        self.fail: str | None = None  # set: every call raises EmbeddingError with this message

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self.fail:
            raise EmbeddingError(self.fail)
        self.calls += 1
        self.texts.extend(texts)
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for word in re.findall(r"\w+", text.lower()):
                h = int(hashlib.md5((self.model_id + word).encode()).hexdigest(), 16)
                v[h % self.dim] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


def settle(path: Path, age: float = 5.0) -> Path:
    """Back-date a file's mtime so a sync does not take it for one still being written."""
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def write(path: Path, content: str | bytes, age: float = 5.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return settle(path, age)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "docs"
    path.mkdir()
    return path


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def collection(tmp_path: Path, folder: Path, embedder: FakeEmbedder):
    c = Collection("test", folder, tmp_path / "index" / "test.sqlite", embedder)
    yield c
    c.close()
