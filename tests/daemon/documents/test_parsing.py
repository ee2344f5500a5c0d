"""Each format is parsed into text and sections (headings, pages) with exact offsets; bad files raise
DocumentError with a reason and what to do."""

from __future__ import annotations

import io

import pytest

from qwendesk.daemon.documents.decode import decode_text
from qwendesk.daemon.documents.errors import DocumentError
from qwendesk.daemon.documents.parsers import is_supported, parse_bytes


def headings(doc) -> list[str | None]:
    return [s.heading for s in doc.sections]


def section_texts(doc) -> list[str]:
    return [doc.text[s.start : s.end] for s in doc.sections]


def make_pdf(pages: list[str], **encryption) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if text:
            pdf.multi_cell(0, 10, text)
        else:
            pdf.rect(20, 20, 50, 50)  # a page with a drawing and no text, like a scan
    if encryption:
        pdf.set_encryption(**encryption)
    return bytes(pdf.output())


def make_docx() -> bytes:
    import docx

    document = docx.Document()
    document.add_heading("Field Guide", 0)
    document.add_paragraph("An introduction to birds.")
    document.add_heading("Herons", 1)
    document.add_paragraph("Herons wade in shallow water.")
    document.add_heading("Grey heron", 2)
    document.add_paragraph("The grey heron is common in Europe.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Bird", "Wingspan"
    table.cell(1, 0).text, table.cell(1, 1).text = "Grey heron", "185 cm"
    document.add_heading("Egrets", 1)
    document.add_paragraph("Egrets are white herons.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_plain_text_and_code_are_one_section_of_the_file_text() -> None:
    doc = parse_bytes(b"line one\r\nline two\r\n", "notes.txt")
    assert doc.text == "line one\nline two\n"  # line endings normalized; offsets index this text
    assert [(s.start, s.end, s.heading) for s in doc.sections] == [(0, len(doc.text), None)]
    code = parse_bytes(b"def f():\n    return 1\n", "tool.py")
    assert section_texts(code) == ["def f():\n    return 1\n"]
    assert parse_bytes(b"   \n\n", "empty.txt").sections == []


def test_markdown_sections_follow_headings_not_hash_lines_in_code() -> None:
    text = (
        "Preface line.\n\n# Guide\n\nIntro.\n\n## Install\n\n```sh\n# not a heading\npip install x\n```\n\n"
        "Setext Title\n============\n\nBody.\n\n> # quoted, not a section\n"
    )
    doc = parse_bytes(text.encode(), "guide.md")
    assert headings(doc) == [None, "Guide", "Guide > Install", "Setext Title"]
    texts = section_texts(doc)
    assert texts[0].strip() == "Preface line."
    assert texts[2].startswith("## Install") and "# not a heading" in texts[2]
    assert texts[3].startswith("Setext Title\n====") and "quoted, not a section" in texts[3]
    assert doc.text == text


def test_rst_titles_with_underlines_and_overlines() -> None:
    text = (
        "=======\nManual\n=======\n\nIntro text.\n\nUsage\n-----\n\nRun it.\n\nOptions\n~~~~~~~\n\n"
        "Flags here.\n\nLimits\n------\n\nNone.\n\n配置\n----\n\n中文内容。\n"
    )
    doc = parse_bytes(text.encode(), "manual.rst")
    assert headings(doc) == [
        "Manual",
        "Manual > Usage",
        "Manual > Usage > Options",
        "Manual > Limits",
        "Manual > 配置",
    ]
    assert section_texts(doc)[0].startswith("=======\nManual")
    assert "中文内容" in section_texts(doc)[-1]


def test_html_text_without_markup_scripts_or_styles() -> None:
    html = """<!doctype html><html><head><title>T</title><style>p {color: red}</style></head>
    <body><nav>Home</nav><h1>Bread</h1><p>Flour, water and <b>salt</b>.<!-- hidden comment --></p>
    <script>var secret = "no";</script>
    <h2>Steps</h2><ol><li>Mix&nbsp;it</li><li>Bake at 220&deg;C</li></ol>
    <pre>  keep
    spacing</pre><table><tr><th>Time</th><td>40 min</td></tr></table>
    <h2>面包</h2><p>今天烤面包。</p></body></html>"""
    doc = parse_bytes(html.encode(), "bread.html")
    assert headings(doc) == [None, "Bread", "Bread > Steps", "Bread > 面包"]
    assert "Flour, water and salt." in doc.text
    assert "Mix it" in doc.text and "Bake at 220°C" in doc.text
    assert "  keep\n    spacing" in doc.text
    assert "Time | 40 min" in doc.text
    for hidden in ("secret", "color: red", "hidden comment", "<"):
        assert hidden not in doc.text
    assert "今天烤面包" in section_texts(doc)[-1]


def test_pdf_pages_become_sections_with_page_numbers() -> None:
    doc = parse_bytes(make_pdf(["First page about alpha.", "", "Third page about gamma."]), "report.pdf")
    assert [s.page for s in doc.sections] == [1, 3]  # the blank page 2 has no text
    assert "alpha" in section_texts(doc)[0] and "gamma" in section_texts(doc)[1]


def test_pdf_encrypted_with_an_empty_user_password_is_read() -> None:
    doc = parse_bytes(make_pdf(["Open secret."], owner_password="owner", user_password=""), "open.pdf")
    assert "Open secret." in doc.text


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (make_pdf(["Hidden."], owner_password="owner", user_password="pw"), "password-protected"),
        (make_pdf(["Some text here."])[:400], "not a readable PDF"),
        (b"%PDF-1.7\n\x00\x01garbage", "not a readable PDF"),
        (b"", "not a readable PDF"),
        (make_pdf(["", ""]), "no text layer"),
    ],
    ids=["encrypted", "truncated", "garbage", "empty", "scan-without-text"],
)
def test_bad_pdfs_raise_document_error_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(DocumentError) as caught:
        parse_bytes(data, "bad.pdf")
    assert reason in caught.value.message and "bad.pdf" in caught.value.message
    assert caught.value.code == "document_unreadable"


def test_docx_sections_follow_heading_styles_and_keep_tables() -> None:
    doc = parse_bytes(make_docx(), "guide.docx")
    assert headings(doc) == [
        "Field Guide",
        "Field Guide > Herons",
        "Field Guide > Herons > Grey heron",
        "Field Guide > Egrets",
    ]
    assert "Grey heron | 185 cm" in section_texts(doc)[2]
    assert section_texts(doc)[3] == "Egrets\n\nEgrets are white herons."


@pytest.mark.parametrize(
    "data", [b"not a zip at all", b"PK\x03\x04broken zip", make_pdf(["a pdf renamed"])], ids=str
)
def test_bad_docx_raises_document_error(data: bytes) -> None:
    with pytest.raises(DocumentError, match="not a readable .docx"):
        parse_bytes(data, "bad.docx")


def test_text_encodings_are_detected() -> None:
    chinese = "今天天气很好，我们去公园散步。通义千问是一个大语言模型。" * 3
    assert decode_text(chinese.encode("gb18030")) == chinese
    assert decode_text("UTF-16 text\n".encode("utf-16")) == "UTF-16 text\n"
    assert decode_text("café crème".encode("utf-8-sig")) == "café crème"
    french = "Le café est très chaud. Où est la bibliothèque? Voilà, ça commence à être intéressant.\n" * 3
    assert decode_text(french.encode("cp1252")) == french


@pytest.mark.parametrize(
    "data",
    [b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)) * 4, bytes(range(1, 32)) * 50],
    ids=["nul-bytes", "control-bytes"],
)
def test_binary_renamed_txt_is_refused(data: bytes) -> None:
    with pytest.raises(DocumentError, match="not a text file"):
        parse_bytes(data, "program.txt")


def test_supported_suffixes() -> None:
    for name in ("a.txt", "B.MD", "c.rst", "d.html", "e.htm", "f.pdf", "g.docx", "h.py", "i.ts", "j.json"):
        assert is_supported(name), name
    for name in ("photo.jpg", "archive.zip", "old.doc", "Makefile", "x.gguf"):
        assert not is_supported(name), name
    with pytest.raises(DocumentError, match="not a supported format"):
        parse_bytes(b"x", "photo.jpg")
