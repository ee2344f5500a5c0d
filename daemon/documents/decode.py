"""Bytes of a text file to str: byte-order marks, UTF-8, else charset detection; binary content is refused."""

from __future__ import annotations

import codecs
import re

from .errors import DocumentError

# UTF-32 first: its little-endian BOM begins with UTF-16's.
BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
SNIFF = 8192
# Control characters other than tab, newlines and form feed: text has almost none, binary data many.
CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
MAX_CONTROL_RATIO = 0.02


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _looks_binary(text: str) -> bool:
    sample = text[:SNIFF]
    return bool(sample) and len(CONTROL.findall(sample)) / len(sample) > MAX_CONTROL_RATIO


def _detected(data: bytes) -> str | None:
    """charset-normalizer's best guess; among equally clean guesses Windows-1252, the most common legacy
    encoding (French text in cp1252 came out as cp1250, "Hungarian", with identical scores)."""
    from charset_normalizer import from_bytes

    matches = from_bytes(data)
    best = matches.best()
    if best is None:
        return None
    for match in matches:
        if match.encoding == "cp1252" and match.chaos <= best.chaos:
            return str(match)
    return str(best)


def decode_text(data: bytes, name: str = "file") -> str:
    """The text of `data` with \\n line endings; DocumentError when it is not text."""
    for bom, encoding in BOMS:
        if data.startswith(bom):
            return normalize_newlines(data[len(bom) :].decode(encoding, errors="replace"))
    not_text = DocumentError(
        f"{name} is not a text file (binary content): convert it to text, or move it out of the collection folder."
    )
    if b"\x00" in data[:SNIFF]:
        raise not_text
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = _detected(data)
        if text is None:
            raise not_text from None
    if _looks_binary(text):
        raise not_text
    return normalize_newlines(text)
