"""The daemon stays small: it never imports what the documents worker loads (SQLite's apsw, sqlite-vec, the
parsers, numpy through sqlite_vec's package). The idle daemon's RSS after real use is measured in
test_documents_daemon_e2e.py."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("apsw", "sqlite_vec", "pypdf", "docx", "lxml", "bs4", "markdown_it", "charset_normalizer", "numpy")


def loaded_after(*modules: str) -> set[str]:
    code = "import importlib, json, sys\n"
    code += "".join(f"importlib.import_module({m!r})\n" for m in modules)
    code += f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_the_daemon_imports_none_of_the_workers_libraries() -> None:
    assert loaded_after("qwendesk.daemon.server", "qwendesk.daemon.cli") == set()


def test_the_worker_opens_an_index_without_numpy(tmp_path) -> None:
    code = (
        "import sys; from pathlib import Path; from qwendesk.daemon.documents.index import DocumentIndex\n"
        f"DocumentIndex(Path({str(tmp_path / 'x.sqlite')!r})).close()\n"
        "print('numpy' in sys.modules, 'apsw' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "True"]
