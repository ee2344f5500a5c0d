"""Full-text search on the real SQLite (apsw + FTS5): Chinese two-character words, English stems, any
user input as a query; and reciprocal rank fusion."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwendesk.daemon.documents.chunking import Chunk
from qwendesk.daemon.documents.index import DocumentIndex
from qwendesk.daemon.documents.search import reciprocal_rank_fusion
from qwendesk.daemon.documents.terms import index_terms, match_expression, query_terms

TEXTS = {
    "zh.txt": "通义千问是阿里云研发的大语言模型。今天天气很好，我们去公园散步。",
    "zh2.txt": "结巴分词支持三种分词模式：精确模式、全模式和搜索引擎模式。",
    "en.txt": "The runners were running quickly through the forest while it rained.",
    "mixed.txt": "Install qwendesk then run 千问 locally with Python3.",
}


@pytest.fixture
def index(tmp_path: Path):
    idx = DocumentIndex(tmp_path / "i.sqlite")
    for path, text in TEXTS.items():
        idx.replace_file(path, len(text), 1, path, [Chunk(0, len(text), text, None, None, 10)])
    yield idx
    idx.close()


def paths(index: DocumentIndex, query: str) -> list[str]:
    hits = index.keyword_search(query, 10)
    rows = index.chunks([i for i, _ in hits])
    return [rows[i].path for i, _ in hits]


def test_cjk_runs_become_bigrams() -> None:
    assert index_terms("通义千问") == " 通义 义千 千问 "
    assert index_terms("a千b") == "a 千 b"
    assert query_terms("今天 天气?") == ["今天", "天气"]
    assert query_terms("Python3中文") == ["python3", "中文"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("千问", {"zh.txt", "mixed.txt"}),  # 2-character words: the case FTS5's trigram tokenizer misses
        ("天气", {"zh.txt"}),
        ("通义千问", {"zh.txt", "mixed.txt"}),
        ("分词模式", {"zh2.txt"}),
        ("搜索引擎", {"zh2.txt"}),
        ("run", {"en.txt", "mixed.txt"}),  # Porter stems: running, runners -> run
        ("RAINS", {"en.txt"}),
        ("python3", {"mixed.txt"}),
    ],
)
def test_keyword_search_finds_chinese_and_english(
    index: DocumentIndex, query: str, expected: set[str]
) -> None:
    found = paths(index, query)
    assert set(found[: len(expected)]) == expected, found


def test_best_match_ranks_first(index: DocumentIndex) -> None:
    assert paths(index, "通义千问 大语言模型")[0] == "zh.txt"
    assert paths(index, "search engine 搜索引擎模式")[0] == "zh2.txt"


@pytest.mark.parametrize(
    "query",
    ['"', 'a "quoted" NEAR(b c)', "title:x", "x* AND NOT y", "(((", "-run", "^run", "🙂", "   ", "OR", "NOT"],
)
def test_any_user_input_is_a_valid_query(index: DocumentIndex, query: str) -> None:
    index.keyword_search(query, 5)  # FTS5 syntax in the input is quoted, never parsed


def test_query_without_terms_matches_nothing(index: DocumentIndex) -> None:
    assert match_expression("?! ...") is None
    assert index.keyword_search("?! ...", 5) == []


def test_reciprocal_rank_fusion() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 1, 4]], k=60)
    scores = dict(fused)
    assert scores[1] == pytest.approx(1 / 61 + 1 / 62)
    assert scores[3] == pytest.approx(1 / 63 + 1 / 61)
    assert scores[2] == pytest.approx(1 / 62) and scores[4] == pytest.approx(1 / 63)
    assert [i for i, _ in fused] == [1, 3, 2, 4]
    assert reciprocal_rank_fusion([]) == []
    assert [i for i, _ in reciprocal_rank_fusion([[7, 8], []])] == [7, 8]


def test_cjk_queries_are_told_by_script() -> None:
    from qwendesk.daemon.documents.terms import is_cjk_query

    assert is_cjk_query("天气怎么样？") and is_cjk_query("在 Python 3.12 下调试时导入很慢")
    assert not is_cjk_query("what is the weather") and not is_cjk_query("install qwendesk then run 千问")
    assert not is_cjk_query("") and not is_cjk_query("?!")
