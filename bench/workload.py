"""The requests every system gets (same bytes, greedy, fixed length) and how one streamed answer is timed.

Shared by the HTTP client (systems b, c, d) and the in-process worker (system a), so both count the same way.
"""

from __future__ import annotations

import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from tests.fixtures.synthetic import WORDS as VOCABULARY_WORDS

# Words that are single tokens in both SmolLM2's and the synthetic Qwen vocabulary (≈ 1 token per word);
# the chat-template words are left out so prompts never look like a turn marker.
WORDS = [w for w in VOCABULARY_WORDS if w not in ("assistant", "system", "arguments")]


def nonce() -> str:
    """A random prefix: no two requests share a cached prompt prefix past the first few template tokens."""
    return secrets.token_hex(6)


def text(n_words: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def chat_body(
    user: str,
    max_tokens: int,
    *,
    model: str = "bench",
    ignore_eos: bool = True,
    eos_bias: dict[str, float] | None = None,
) -> dict[str, Any]:
    """A streamed, greedy chat request; the nonce goes first (system message) to defeat the prompt cache."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": f"[{nonce()}] You are a helpful assistant."},
            {"role": "user", "content": user},
        ],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
        "top_k": 1,
        "seed": 1,
    }
    if ignore_eos:
        body["ignore_eos"] = True
    if eos_bias:  # llama-cpp-python's server has no ignore_eos: ban the end tokens instead
        body["logit_bias"] = eos_bias
    return body


@dataclass
class StreamRecord:
    """Client-side timings of one streamed answer (perf_counter seconds) plus the engine's own numbers."""

    sent: float = 0.0
    first: float | None = None  # first chunk that carries generated text
    end: float = 0.0
    chunks: int = 0  # chunks with generated text
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    timings: dict[str, Any] = field(
        default_factory=dict
    )  # llama.cpp's `timings`, when the system passes them
    error: str | None = None

    # ---- feeding ----------------------------------------------------------------------------------
    def on_chunk(self, obj: Any, now: float | None = None) -> None:
        now = time.perf_counter() if now is None else now
        if not isinstance(obj, dict):
            return
        if "error" in obj:
            self.error = str(obj["error"])[:300]
            return
        for choice in obj.get("choices") or []:
            delta = choice.get("delta") or {}
            # A token whose text is empty (a partial UTF-8 byte of random weights) still arrives as a
            # chunk with "content": ""; the role-only opening chunk has content null. A 1-token answer
            # of an unprintable token shows up only as the finishing chunk.
            token = delta.get("content") is not None or delta.get("reasoning_content") is not None
            if token:
                self.chunks += 1
            if (token or choice.get("finish_reason")) and self.first is None:
                self.first = now
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
        if isinstance(obj.get("timings"), dict):
            self.timings = obj["timings"]

    # ---- derived ----------------------------------------------------------------------------------
    @property
    def tokens(self) -> int:
        """Generated tokens: the engine's count when given, else text chunks (one per token in llama.cpp)."""
        return self.completion_tokens or self.timings.get("predicted_n") or self.chunks

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.sent

    @property
    def decode_tps(self) -> float | None:
        """Tokens after the first over the time after the first: the streaming rate a user sees."""
        if self.first is None or self.tokens < 2 or self.end <= self.first:
            return None
        return (self.tokens - 1) / (self.end - self.first)

    @property
    def prompt_tps(self) -> float | None:
        """Prompt tokens over time to first token (includes one decode step and the transport)."""
        ttft = self.ttft
        return None if not ttft or not self.prompt_tokens else self.prompt_tokens / ttft

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        keep = (
            "prompt_n",
            "prompt_ms",
            "prompt_per_second",
            "predicted_n",
            "predicted_ms",
            "predicted_per_second",
        )
        data["timings"] = {k: v for k, v in self.timings.items() if k in keep}
        data.update(
            ttft=self.ttft, decode_tps=self.decode_tps, prompt_tps=self.prompt_tps, tokens=self.tokens
        )
        return data


def batch_summary(records: list[StreamRecord]) -> dict[str, Any]:
    """Concurrent clients: aggregate tokens over the wall time from the first send to the last end."""
    ok = [r for r in records if r.error is None and r.first is not None]
    if not ok:
        return {"aggregate_tps": None, "errors": [r.error for r in records]}
    wall = max(r.end for r in ok) - min(r.sent for r in ok)
    total = sum(r.tokens for r in ok)
    return {
        "aggregate_tps": total / wall if wall > 0 else None,
        "tokens": total,
        "wall_s": wall,
        "clients_ok": len(ok),
        "errors": [r.error for r in records if r.error],
    }
