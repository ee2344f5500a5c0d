"""What a parser yields: a document's extracted text and its sections (heading or page), by character offsets."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Section:
    """A span `text[start:end]` of the document under one heading (path "A > B") or on one page (1-based)."""

    start: int
    end: int
    heading: str | None = None
    page: int | None = None


@dataclass
class ParsedDocument:
    """Extracted text (line endings normalized to \\n) and its sections in order; offsets index `text`."""

    text: str
    sections: list[Section] = field(default_factory=list)

    @classmethod
    def whole(cls, text: str) -> ParsedDocument:
        """A document that is one section (plain text, source code)."""
        return cls(text, [Section(0, len(text))] if text.strip() else [])


class HeadingPath:
    """The open headings by level, written as one path "Guide > Install > Linux"."""

    def __init__(self) -> None:
        self._levels: list[tuple[int, str]] = []

    def enter(self, level: int, title: str) -> str:
        """A heading of `level` closes those at the same level or deeper; returns the new path."""
        while self._levels and self._levels[-1][0] >= level:
            self._levels.pop()
        self._levels.append((level, " ".join(title.split())))
        return self.path

    @property
    def path(self) -> str:
        return " > ".join(title for _, title in self._levels if title)


def sections_from_marks(text: str, marks: list[tuple[int, str | None]]) -> list[Section]:
    """Sections from (offset, heading) marks sorted by offset: each runs to the next mark; blank spans dropped."""
    bounds = [(0, None), *marks] if not marks or marks[0][0] > 0 else marks
    out = []
    for i, (start, heading) in enumerate(bounds):
        end = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        if text[start:end].strip():
            out.append(Section(start, end, heading or None))
    return out
