"""Chunks are exact spans of the text, stay inside one section, respect the token limit, and overlap a little."""

from __future__ import annotations

from qwendesk.daemon.documents.chunking import Chunk, chunk_document, count_tokens
from qwendesk.daemon.documents.document import ParsedDocument, Section
from qwendesk.daemon.documents.parsers import parse_bytes


def check_spans(doc: ParsedDocument, chunks: list[Chunk], limit: int) -> None:
    for chunk in chunks:
        assert doc.text[chunk.start : chunk.end] == chunk.text
        assert chunk.text == chunk.text.strip() and chunk.text
        assert chunk.tokens <= limit and count_tokens(chunk.text) <= limit + 5  # separators are not counted


def test_token_estimate_rule() -> None:
    assert count_tokens("") == 0
    assert count_tokens("cat sat") == 2
    assert count_tokens("internationalization") == 1 + 19 // 5  # long words count as several pieces
    assert count_tokens("x = 42;") == 4
    assert count_tokens("今天天气很好") == 6  # one per CJK character


def test_paragraphs_pack_to_target_with_overlap() -> None:
    paragraphs = [f"Paragraph {i} " + " ".join(f"word{i}x{j}" for j in range(10)) + "." for i in range(40)]
    text = "\n\n".join(paragraphs)
    doc = ParsedDocument.whole(text)
    chunks = chunk_document(doc, target=130, limit=160, overlap=50)
    check_spans(doc, chunks, 160)
    assert len(chunks) > 5
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())  # nothing lost
    # consecutive chunks share a whole paragraph (overlap), and each chunk starts at a paragraph start
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end
        assert text[b.start :].startswith("Paragraph")


def test_chunks_never_cross_sections() -> None:
    text = "# One\n\nalpha beta.\n\n# Two\n\ngamma delta.\n"
    doc = parse_bytes(text.encode(), "x.md")
    chunks = chunk_document(doc)
    assert [(c.heading, c.text) for c in chunks] == [
        ("One", "# One\n\nalpha beta."),
        ("Two", "# Two\n\ngamma delta."),
    ]


def test_pages_carry_over_to_chunks() -> None:
    text = "page one text\n\npage two text"
    doc = ParsedDocument(text, [Section(0, 13, page=1), Section(15, len(text), page=2)])
    assert [(c.page, c.text) for c in chunk_document(doc)] == [(1, "page one text"), (2, "page two text")]


def test_oversized_units_are_split_by_lines_sentences_then_words() -> None:
    long_line = " ".join(f"Sentence number {i} ends here." for i in range(200))  # one line, many sentences
    cjk = "天" * 2000  # no punctuation, no spaces: only the word-window fallback can cut it
    minified = "a=1;" * 1500  # code with no spaces or lines
    for text in (long_line, cjk, minified):
        doc = ParsedDocument.whole(text)
        chunks = chunk_document(doc, target=100, limit=120, overlap=20)
        check_spans(doc, chunks, 120)
        assert len(chunks) >= count_tokens(text) // 120
        assert chunks[-1].end == len(text) and chunks[0].start == 0
    sentences = chunk_document(ParsedDocument.whole(long_line), target=100, limit=120, overlap=20)
    assert all(c.text.endswith(".") for c in sentences)  # cut at sentence ends, not mid-sentence


def test_small_tail_joins_the_previous_chunk() -> None:
    text = "\n\n".join(["word " * 90, "word " * 90, "tail."])
    chunks = chunk_document(ParsedDocument.whole(text), target=100, limit=200, overlap=10)
    assert chunks[-1].text.endswith("tail.") and len(chunks) == 2
