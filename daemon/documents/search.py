"""Search one index: BM25 (FTS5), vector (sqlite-vec KNN), hybrid (reciprocal rank fusion), optional rerank."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

from .embedder import Embedder
from .errors import EmbeddingError
from .index import DocumentIndex, ModelRow

Mode = Literal["hybrid", "bm25", "vector"]
# (query, candidate texts) -> one relevance score per text, higher is better (a cross-encoder, say). It
# raises EmbeddingError when its model cannot answer: the ranking is then kept as it was (and `note` says so).
Reranker = Callable[[str, list[str]], list[float]]

RRF_K = 60  # the constant of Cormack et al. (2009); ranks past ~60 barely count
CANDIDATES = 40  # per ranked list, before fusion
RERANK_DEPTH = 20


@dataclass(frozen=True)
class SearchHit:
    """A chunk that answers: `path` is relative to the collection folder; `start`/`end` index the text
    the parser extracted from the file (for text formats: the file's own text, line endings as \\n)."""

    collection: str
    path: str
    page: int | None
    heading: str | None
    text: str
    score: float
    start: int
    end: int
    chunk_id: int

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    hits: list[SearchHit]
    mode: Mode  # what actually ranked the hits
    note: str | None = None  # why the mode asked for was not used, for people ("keyword search only: ...")

    def as_dict(self) -> dict:
        return {"results": [h.as_dict() for h in self.hits], "mode": self.mode, "note": self.note}


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Ids by summed 1 / (k + rank) over the rankings (rank from 1), best first; ties keep first-seen order."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


def search_index(
    index: DocumentIndex,
    collection: str,
    query: str,
    k: int,
    mode: Mode = "hybrid",
    vectors: tuple[ModelRow, Embedder] | None = None,
    why_no_vectors: str | None = None,
    reranker: Reranker | None = None,
) -> SearchResult:
    """Rank chunks for `query`; `vectors` is the model to search with and the embedder for the query."""
    depth = max(CANDIDATES, k, RERANK_DEPTH if reranker else 0)
    note = None
    keyword = index.keyword_search(query, depth) if mode != "vector" else []
    nearest: list[tuple[int, float]] | None = None
    if mode != "bm25":
        if vectors is None:
            note = why_no_vectors or "no embedding model is set"
        else:
            model, embedder = vectors
            try:
                nearest = index.vector_search(model, embedder.embed([query])[0], depth)
            except EmbeddingError as exc:
                note = exc.message
    if nearest is None:
        used: Mode = "bm25"
        ranked = keyword if mode != "vector" else index.keyword_search(query, depth)
        if mode != "bm25":
            note = f"keyword search only: {note}"
    elif mode == "vector":
        used, ranked = "vector", nearest
    else:
        used = "hybrid"
        ranked = reciprocal_rank_fusion([[i for i, _ in keyword], [i for i, _ in nearest]])
    if reranker is not None and ranked:
        top = ranked[:depth]
        rows = index.chunks([i for i, _ in top])
        top = [(i, s) for i, s in top if i in rows]
        try:
            scores = reranker(query, [rows[i].text for i, _ in top])
            ranked = sorted(zip([i for i, _ in top], scores, strict=True), key=lambda kv: -kv[1])
        except EmbeddingError as exc:
            note = "; ".join(n for n in (note, f"not reranked: {exc.message}") if n)
    ranked = ranked[: k * 2]  # a few spare in case a chunk went between the ranking and the read
    rows = index.chunks([i for i, _ in ranked])
    hits = [
        SearchHit(collection, r.path, r.page, r.heading, r.text, float(score), r.start, r.end, r.id)
        for i, score in ranked
        if (r := rows.get(i)) is not None
    ]
    return SearchResult(hits[:k], used, note)
