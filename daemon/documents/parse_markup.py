"""Markdown and reStructuredText: the text as written, cut into sections at headings."""

from __future__ import annotations

import re
from itertools import accumulate

from .document import HeadingPath, ParsedDocument, sections_from_marks

# A line of one repeated punctuation character: a reStructuredText title adornment.
ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")


def _line_starts(text: str) -> list[int]:
    return [0, *accumulate(len(line) + 1 for line in text.split("\n"))]


def parse_markdown(text: str) -> ParsedDocument:
    """Headings found by a CommonMark parser (markdown-it-py), so `#` lines in code blocks are not headings."""
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").parse(text)
    starts = _line_starts(text)
    path = HeadingPath()
    marks: list[tuple[int, str | None]] = []
    for i, token in enumerate(tokens):
        # level 0: a heading of the document itself, not one quoted inside a blockquote or list
        if token.type == "heading_open" and token.map and token.level == 0:
            title = tokens[i + 1].content if i + 1 < len(tokens) else ""
            marks.append((starts[token.map[0]], path.enter(int(token.tag[1:]), title)))
    return ParsedDocument(text, sections_from_marks(text, marks))


def parse_rst(text: str) -> ParsedDocument:
    """Titles are a line underlined (optionally also overlined) with punctuation; levels in order of first use.

    Hand-written: docutils would build the whole doctree and report no character offsets for it.
    """
    lines = text.split("\n")
    starts = _line_starts(text)
    styles: list[tuple[str, bool]] = []
    path = HeadingPath()
    marks: list[tuple[int, str | None]] = []
    i = 0
    while i + 1 < len(lines):
        title, under = lines[i], lines[i + 1]
        adornment = ADORNMENT.match(under)
        overlined = i > 0 and lines[i - 1].rstrip() == under.rstrip()
        is_title = (
            adornment is not None
            and title.strip()
            and not ADORNMENT.match(title)
            and (overlined or not title[:1].isspace())
            and len(under.rstrip()) >= len(title.strip())
        )
        if is_title:
            style = (adornment.group(1), overlined)
            if style not in styles:
                styles.append(style)
            first = i - 1 if overlined else i
            marks.append((starts[first], path.enter(styles.index(style) + 1, title.strip())))
            i += 2
            continue
        i += 1
    return ParsedDocument(text, sections_from_marks(text, marks))
