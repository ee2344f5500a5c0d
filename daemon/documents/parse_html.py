"""HTML to plain text (BeautifulSoup, Python's own html.parser): paragraphs kept apart, sections at h1-h6."""

from __future__ import annotations

import re
from typing import Any

from .document import HeadingPath, ParsedDocument, sections_from_marks

SKIP = {"script", "style", "noscript", "template", "head", "svg", "canvas", "iframe", "object", "select"}
HEADINGS = {f"h{n}" for n in range(1, 7)}
BLOCKS = {
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog", "div", "dl", "dt",
    "fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "html", "li", "main", "nav", "ol", "p",
    "section", "summary", "table", "tbody", "tfoot", "thead", "tr", "ul",
}  # fmt: skip
SPACE = re.compile(r"\s+")


class _TextBuilder:
    """Collects paragraphs (inline text joined, whitespace collapsed) and heading marks at their offsets."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.inline: list[str] = []
        self.marks: list[tuple[int, str | None]] = []
        self.headings = HeadingPath()

    def _emit(self, paragraph: str) -> int:
        """Append a paragraph; returns its start offset."""
        if self.length:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(paragraph)
        self.length += len(paragraph)
        return start

    def flush(self) -> None:
        paragraph = SPACE.sub(" ", "".join(self.inline)).strip()
        self.inline.clear()
        if paragraph:
            self._emit(paragraph)

    def heading(self, level: int, title: str) -> None:
        self.flush()
        title = SPACE.sub(" ", title).strip()
        if title:
            start = self._emit(title)
            self.marks.append((start, self.headings.enter(level, title)))

    def preformatted(self, text: str) -> None:
        self.flush()
        if text.strip():
            self._emit(text.strip("\n"))

    @property
    def text(self) -> str:
        return "".join(self.parts)


def _walk(node: Any, out: _TextBuilder) -> None:
    from bs4.element import NavigableString, PreformattedString

    for child in node.children:
        if isinstance(child, PreformattedString):  # comments, doctype, processing instructions, CDATA
            continue
        if isinstance(child, NavigableString):
            out.inline.append(str(child))
            continue
        name = child.name
        if name in SKIP:
            continue
        if name in HEADINGS:
            out.heading(int(name[1]), child.get_text(" "))
        elif name == "pre":
            out.preformatted(child.get_text())
        elif name == "br":
            out.inline.append("\n")
        elif name in ("td", "th"):
            out.inline.append(" ")
            _walk(child, out)
            out.inline.append(" |")
        elif name in BLOCKS:
            out.flush()
            _walk(child, out)
            out.flush()
        else:
            _walk(child, out)


def parse_html(html: str) -> ParsedDocument:
    from bs4 import BeautifulSoup

    out = _TextBuilder()
    _walk(BeautifulSoup(html, "html.parser"), out)
    out.flush()
    text = out.text
    return ParsedDocument(text, sections_from_marks(text, out.marks))
