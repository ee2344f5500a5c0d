"""PDF (pypdf: one section per page) and Word .docx (python-docx: sections at Heading styles)."""

from __future__ import annotations

import io
import re
from typing import Any

from .document import HeadingPath, ParsedDocument, Section, sections_from_marks
from .errors import DocumentError

HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def parse_pdf(data: bytes, name: str = "PDF") -> ParsedDocument:
    """The text layer of every page; encrypted PDFs open only if their user password is empty."""
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # malformed-but-readable files log one line per quirk
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise DocumentError(
                f"{name} is password-protected: save an unprotected copy into the collection folder."
            )
        pages = [page.extract_text() or "" for page in reader.pages]
    except DocumentError:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files: any of them means "unreadable"
        if type(exc).__name__ == "DependencyError":  # AES needs the `cryptography` package
            raise DocumentError(f"{name} uses AES encryption: save an unprotected copy.") from exc
        raise DocumentError(f"{name} is not a readable PDF ({exc}): re-save or re-export it.") from exc
    parts: list[str] = []
    sections: list[Section] = []
    offset = 0
    for number, page_text in enumerate(pages, start=1):
        page_text = page_text.replace("\r\n", "\n").strip()
        if not page_text:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        sections.append(Section(offset, offset + len(page_text), page=number))
        parts.append(page_text)
        offset += len(page_text)
    if pages and not sections:
        raise DocumentError(f"{name} has no text layer (a scan?): run OCR on it, then save it again.")
    return ParsedDocument("".join(parts), sections)


def _blocks(document: Any) -> list[tuple[str, int | None]]:
    """(text, heading level or None) for every paragraph and table row, in document order."""
    from docx.table import Table

    out: list[tuple[str, int | None]] = []
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            for row in block.rows:
                cells = [" ".join(cell.text.split()) for cell in row.cells]
                out.append((" | ".join(c for c in cells if c), None))
            continue
        style = block.style.name if block.style is not None else ""
        match = HEADING_STYLE.match(style or "")
        level = 0 if style == "Title" else int(match.group(1)) if match else None
        out.append((block.text, level))
    return out


def parse_docx(data: bytes, name: str = "document") -> ParsedDocument:
    import zipfile

    import docx

    try:
        blocks = _blocks(docx.Document(io.BytesIO(data)))
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(
            f"{name} is not a readable .docx (corrupt, password-protected or an old .doc): "
            "open it in Word and save it as .docx without a password."
        ) from exc
    except Exception as exc:  # python-docx/lxml raise several kinds on damaged parts
        raise DocumentError(f"{name} is not a readable .docx ({exc}): re-save it in Word.") from exc
    parts: list[str] = []
    marks: list[tuple[int, str | None]] = []
    headings = HeadingPath()
    offset = 0
    for text, level in blocks:
        text = text.strip()
        if not text:
            continue
        if parts:
            parts.append("\n\n")
            offset += 2
        if level is not None:
            marks.append((offset, headings.enter(level, text)))
        parts.append(text)
        offset += len(text)
    full = "".join(parts)
    return ParsedDocument(full, sections_from_marks(full, marks))
