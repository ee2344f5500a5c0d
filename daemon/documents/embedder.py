"""Embedders: the protocol the index uses, and HttpEmbedder for any OpenAI-compatible /v1/embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .errors import EmbeddingError

TOO_LONG_RETRIES = 4  # each retry keeps 3/4 of the text


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors, in order; `model_id` names the model (vectors of different ids never mix).

    `embed` is synchronous and may be called from any worker thread; it raises EmbeddingError on failure.
    An embedder may also have `languages` (ISO 639-1 codes the model was trained on, None = any): a query
    mostly in Chinese, Japanese or Korean is then answered by keywords alone when the model lacks them.
    """

    model_id: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class HttpEmbedder:
    """POSTs batches to an OpenAI-compatible embeddings URL (the daemon's /v1/embeddings, or a llama-server).

    An input too long for the model is cut to fit (the server's error names no limit, so the text is
    shortened by a quarter until it is accepted); other errors raise EmbeddingError.
    """

    def __init__(
        self,
        url: str,
        model: str,
        *,
        model_id: str | None = None,
        languages: tuple[str, ...] | None = None,
        api_key: str | None = None,
        batch_size: int = 32,
        timeout: float = 120.0,
        client: Any = None,
    ) -> None:
        import httpx

        self.url = url
        self.model = model
        self.model_id = model_id or model
        self.languages = languages
        self.batch_size = batch_size
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.Client(timeout=timeout, headers=headers)
        self.calls = 0  # requests sent (tests and benchmarks count them)

    def close(self) -> None:
        self._client.close()

    def embed(self, texts: list[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self.batch_size):
            out.extend(self._batch(texts[i : i + self.batch_size]))
        return out

    def _post(self, texts: Sequence[str]) -> Any:
        import httpx

        self.calls += 1
        try:
            return self._client.post(
                self.url, json={"model": self.model, "input": list(texts), "encoding_format": "float"}
            )
        except httpx.HTTPError as exc:
            raise EmbeddingError(
                f"The embedding model {self.model} at {self.url} did not answer ({exc}): "
                "check that the daemon is running and the model is available."
            ) from exc

    def _batch(self, texts: list[str]) -> list[list[float]]:
        response = self._post(texts)
        if response.status_code == 200:
            data = sorted(response.json()["data"], key=lambda d: d["index"])
            if len(data) != len(texts):
                raise EmbeddingError(f"{self.url} returned {len(data)} vectors for {len(texts)} texts.")
            return [d["embedding"] for d in data]
        if _too_long(response) and len(texts) > 1:  # find the long one: halves, then one by one
            middle = len(texts) // 2
            return self._batch(texts[:middle]) + self._batch(texts[middle:])
        if _too_long(response):
            return [self._shortened(texts[0])]
        raise EmbeddingError(
            f"The embedding model {self.model} refused a batch (HTTP {response.status_code}: "
            f"{response.text[:300]}): check that it is an embedding model."
        )

    def _shortened(self, text: str) -> list[float]:
        for _ in range(TOO_LONG_RETRIES):
            text = text[: max(1, len(text) * 3 // 4)]
            response = self._post([text])
            if response.status_code == 200:
                return response.json()["data"][0]["embedding"]
            if not _too_long(response):
                break
        raise EmbeddingError(f"The embedding model {self.model} refused a text even when shortened.")


def covers(embedder: Embedder, query: str) -> bool:
    """Whether the embedder's model knows the query's language (only CJK is told apart, by script).

    Measured reason: all-MiniLM-L6-v2 (English) put 18 of 19 Chinese questions' answers outside its top 5,
    and fused with BM25 it halved BM25's recall on them (bench/retrieval/README.md).
    """
    from .terms import CJK_LANGUAGES, is_cjk_query

    languages = getattr(embedder, "languages", None)
    return languages is None or not is_cjk_query(query) or bool(CJK_LANGUAGES & set(languages))


def _too_long(response: Any) -> bool:
    body = response.text.lower()
    return response.status_code in (400, 413, 500) and ("too large" in body or "too long" in body)
