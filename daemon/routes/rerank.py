"""Reranking at /v1/rerank in the shape llama.cpp, Jina and Cohere share: `query`, `documents`, `top_n` ->
`results` of `index` and `relevance_score`, best first. A reranker GGUF serves it, started on demand;
llama.cpp's own endpoint answers (bytes through, `model` rewritten)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from .proxy import forward

router = APIRouter(prefix="/v1", tags=["rerank"])


@router.post("/rerank")
async def rerank(request: Request) -> Response:
    """Score `documents` against `query` with a reranker model."""
    return await forward(request, "/v1/rerank", "rerank")
