"""Text to full-text terms: FTS5's unicode61 tokenizer keeps a run of CJK characters as one token (so
`千问` never matches `通义千问`), so CJK runs are rewritten as overlapping character bigrams before
indexing and before querying; other text passes through (lower-casing, diacritics and Porter stemming are
FTS5's). Bigrams need no dictionary; jieba's word segmentation was measured against them (bench/retrieval).
"""

from __future__ import annotations

import re

# CJK ideographs (with extension A and compatibility), kana and Hangul: scripts written without spaces.
CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af]+")
WORD = re.compile(r"\w+")
MAX_QUERY_TERMS = 64


CJK_LANGUAGES = {"zh", "ja", "ko"}


def is_cjk_query(query: str) -> bool:
    """Mostly CJK: at least a third of the query's word characters are CJK (so 'Python 3.12 下调试' counts)."""
    cjk = sum(len(run) for run in CJK_RUN.findall(query))
    letters = sum(len(word) for word in WORD.findall(query))
    return cjk > 0 and cjk * 3 >= letters


def _bigrams(run: str) -> list[str]:
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def index_terms(text: str) -> str:
    """The text FTS5 indexes: CJK runs become space-separated bigrams, the rest is unchanged."""
    return CJK_RUN.sub(lambda m: " " + " ".join(_bigrams(m.group())) + " ", text)


def query_terms(query: str) -> list[str]:
    """Distinct terms of a query, in order: words, and bigrams of CJK runs."""
    seen: dict[str, None] = {}
    for token in WORD.findall(index_terms(query)):
        seen.setdefault(token.lower())
    return list(seen)[:MAX_QUERY_TERMS]


def match_expression(query: str) -> str | None:
    """An FTS5 MATCH expression that ranks by BM25 over any of the query's terms (None: no terms)."""
    terms = query_terms(query)
    return " OR ".join('"' + t.replace('"', '""') + '"' for t in terms) if terms else None
