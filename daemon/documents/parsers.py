"""Which files a collection reads, and the parser for each: bytes in, ParsedDocument out (or DocumentError)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePath

from . import parse_html, parse_markup, parse_office
from .decode import decode_text
from .document import ParsedDocument
from .errors import DocumentError

MARKDOWN = {".md", ".markdown", ".mdx"}
RST = {".rst"}
HTML = {".html", ".htm", ".xhtml"}
PLAIN = {".txt", ".text", ".csv", ".tsv", ".log", ".tex", ".org", ".adoc"}
# Source code and configuration: indexed as plain text.
CODE = {
    ".py", ".pyi", ".js", ".mjs", ".ts", ".tsx", ".jsx", ".java", ".kt", ".scala", ".go", ".rs", ".c", ".h",
    ".cc", ".cpp", ".hpp", ".cs", ".swift", ".m", ".rb", ".php", ".pl", ".lua", ".r", ".jl", ".sh", ".bash",
    ".zsh", ".ps1", ".sql", ".css", ".scss", ".vue", ".svelte", ".json", ".yaml", ".yml", ".toml", ".ini",
    ".cfg", ".xml", ".proto", ".graphql", ".dart", ".ex", ".exs", ".erl", ".hs", ".ml", ".clj", ".zig", ".nim",
}  # fmt: skip
BINARY_FORMATS = {".pdf", ".docx"}
SUPPORTED = MARKDOWN | RST | HTML | PLAIN | CODE | BINARY_FORMATS


def is_supported(name: str) -> bool:
    """A file name with a suffix some parser reads (case-insensitive)."""
    return PurePath(name).suffix.lower() in SUPPORTED


def _text_parser(parse: Callable[[str], ParsedDocument]) -> Callable[[bytes, str], ParsedDocument]:
    return lambda data, name: parse(decode_text(data, name))


def _parser(suffix: str) -> Callable[[bytes, str], ParsedDocument]:
    if suffix in MARKDOWN:
        return _text_parser(parse_markup.parse_markdown)
    if suffix in RST:
        return _text_parser(parse_markup.parse_rst)
    if suffix in HTML:
        return _text_parser(parse_html.parse_html)
    if suffix == ".pdf":
        return parse_office.parse_pdf
    if suffix == ".docx":
        return parse_office.parse_docx
    return _text_parser(ParsedDocument.whole)


def parse_bytes(data: bytes, name: str) -> ParsedDocument:
    """Parse a file's content by its name's suffix; DocumentError says why a file cannot be read."""
    suffix = PurePath(name).suffix.lower()
    if suffix not in SUPPORTED:
        raise DocumentError(f"{name}: {suffix or 'files without a suffix'} is not a supported format.")
    return _parser(suffix)(data, name)
