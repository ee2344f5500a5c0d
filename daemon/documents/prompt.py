"""Retrieved chunks into a chat request: numbered sources before the question, an instruction to cite them,
as many sources as the model's context leaves room for, and the citations the reply carries.

Token counts are chunking.count_tokens estimates (no tokenizer is loaded here). Measured against WordPiece
they run 0.95-1.44x the real count; a chat model's BPE vocabulary (Qwen: 151k entries) splits text into
fewer pieces than WordPiece's 30k, so the estimate times SAFETY stays above the real count.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from .chunking import count_tokens

SAFETY = 1.25  # estimated tokens x this = what a source is assumed to cost
MESSAGE_OVERHEAD = 8  # role markers and separators per message
IMAGE_TOKENS = 768  # an image part's cost when the budget is counted (Qwen2.5-VL at the default pixel budget)
MIN_SOURCE_TOKENS = 48  # a source cut shorter than this is not worth sending
DEFAULT_ANSWER_SHARE = 4  # with no max_tokens, a quarter of the context is kept for the answer...
DEFAULT_ANSWER_CAP = 1024  # ...at most this many tokens

INSTRUCTION = (
    "Answer from the numbered sources given with the question: they are passages of the user's documents. "
    "Cite every source you use by its number in square brackets, like [1] or [2][3]. If the sources do not "
    "hold the answer, say that the documents do not cover it."
)
NO_ROOM = (
    "The user asked about their documents, but the conversation is too long to add passages of them: say "
    "so, and suggest a new conversation."
)
NO_SOURCES = (
    "The user asked about their documents, but no passage of them matched this question: say that the "
    "documents do not seem to cover it."
)


@dataclass
class Sources:
    """The messages to send and the sources they carry (`citations`, numbered from 1)."""

    messages: list[dict[str, Any]]
    citations: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0  # retrieved chunks left out for lack of room


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def question_of(messages: Any) -> str | None:
    """The last user message's text: what to search the documents for."""
    if not isinstance(messages, list):
        return None
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            text = text_of(message.get("content")).strip()
            return text or None
    return None


def estimate(messages: list[dict[str, Any]]) -> int:
    """Tokens the messages are assumed to take (with SAFETY)."""
    total = 0
    for message in messages:
        content = message.get("content")
        images = (
            sum(1 for p in content if isinstance(p, dict) and p.get("type") != "text")
            if isinstance(content, list)
            else 0
        )
        total += MESSAGE_OVERHEAD + int(count_tokens(text_of(content)) * SAFETY) + images * IMAGE_TOKENS
    return total


def answer_reserve(body: dict[str, Any], n_ctx: int) -> int:
    """Tokens kept free for the answer: the request's max_tokens, else a share of the context."""
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return min(DEFAULT_ANSWER_CAP, n_ctx // DEFAULT_ANSWER_SHARE)


def label(hit: dict[str, Any]) -> str:
    """`notes/keys.md — Backup > Keys` or `manual.pdf, page 3`."""
    where = [hit["path"]]
    if hit.get("page"):
        where.append(f"page {hit['page']}")
    text = ", ".join(where)
    return f"{text} — {hit['heading']}" if hit.get("heading") else text


def heading_only(hit: dict[str, Any]) -> bool:
    """A chunk that is nothing but its section's heading (`# Backup` before its first sub-heading)."""
    title = (hit.get("heading") or "").rsplit(" > ", 1)[-1].strip()
    return bool(title) and hit["text"].strip().lstrip("#=-*").strip() == title


def _cut(text: str, tokens: int) -> str:
    """The start of `text` worth about `tokens` estimated tokens, cut at a word."""
    if count_tokens(text) <= tokens:
        return text
    low, high = 0, len(text)
    while low < high:  # the longest prefix that fits
        middle = (low + high + 1) // 2
        if count_tokens(text[:middle]) <= tokens:
            low = middle
        else:
            high = middle - 1
    cut = text[:low]
    space = cut.rfind(" ")
    return (cut[:space] if space > len(cut) // 2 else cut).rstrip() + " …"


def add_sources(messages: list[dict[str, Any]], hits: list[dict[str, Any]], budget: int) -> Sources:
    """`messages` with the instruction in the system message and the sources that fit in `budget` tokens
    (what the context has left after the conversation and the answer) put before the last user message."""
    left = budget - int(count_tokens(INSTRUCTION) * SAFETY) - MESSAGE_OVERHEAD
    blocks, citations = [], []
    hits = [h for h in hits if not heading_only(h)]
    for hit in hits:
        head = f"[{len(citations) + 1}] {label(hit)}\n"
        text = hit["text"]
        cost = int((count_tokens(head) + count_tokens(text)) * SAFETY) + 2
        if cost > left:
            room = int(left / SAFETY) - count_tokens(head) - 2
            if room < MIN_SOURCE_TOKENS:
                break
            text = _cut(text, room)
            cost = int((count_tokens(head) + count_tokens(text)) * SAFETY) + 2
        left -= cost
        blocks.append(head + text)
        citations.append(
            {
                "index": len(citations) + 1,
                "collection": hit.get("collection"),
                "path": hit["path"],
                "page": hit.get("page"),
                "heading": hit.get("heading"),
                "text": hit["text"],
                "score": hit.get("score"),
            }
        )
    out = copy.deepcopy(messages)
    instruction = INSTRUCTION if blocks else NO_ROOM if hits else NO_SOURCES
    if out and out[0].get("role") == "system":
        existing = text_of(out[0].get("content"))
        out[0]["content"] = f"{existing}\n\n{instruction}" if existing else instruction
    else:
        out.insert(0, {"role": "system", "content": instruction})
    if blocks:
        last = max(i for i, m in enumerate(out) if m.get("role") == "user")
        prefix = "Sources:\n\n" + "\n\n".join(blocks) + "\n\nQuestion: "
        content = out[last].get("content")
        if isinstance(content, list):
            out[last]["content"] = [{"type": "text", "text": prefix.rstrip() + "\n"}, *content]
        else:
            out[last]["content"] = prefix + text_of(content)
    return Sources(out, citations, len(hits) - len(citations))
