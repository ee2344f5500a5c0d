"""Models on disk: scanning folders into named models, bad files, links and names (no Xinference needed)."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

from qwendesk.models.errors import BadRequest, NotFound
from qwendesk.models.folder import model_name_for, resolve_model_path, scan
from tests.fixtures.synthetic import write_minimal_gguf

XINFERENCE_FORBIDDEN = re.compile(r"[+\\/?%#&=\s]")


def _link(src: Path, dst: Path) -> Path:
    """A hard link (or copy) of a read-only fixture into a models folder."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)
    return dst


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "qwen2.5-1.5b-instruct-q4_k_m"),
        ("Qwen2.5-7B-Instruct-Q4_K_M-00001-of-00003.gguf", "qwen2.5-7b-instruct-q4_k_m"),
        ("My Model (copy).GGUF", "my-model-copy"),
        ("a+b=c?#&%.gguf", "a-b-c"),
        ("Café-ünïcode.gguf", "cafe-unicode"),
        ("qwen3.gguf", "qwen3-gguf"),  # a reserved name (e.g. one Xinference has built in) is not taken
    ],
)
def test_model_name_for(file: str, name: str) -> None:
    assert model_name_for(file, reserved={"qwen3"}) == name
    assert re.fullmatch(r"[a-z0-9._-]+", name) and not XINFERENCE_FORBIDDEN.search(name)


def test_name_of_non_latin_file_is_stable() -> None:
    name = model_name_for("千问模型.gguf")
    assert re.fullmatch(r"model-[0-9a-f]+", name) and name == model_name_for("千问模型.gguf")
    assert name != model_name_for("另一个.gguf")


def test_same_file_name_in_two_folders(tmp_path: Path, qwen2_gguf: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    _link(qwen2_gguf, one / "model.gguf")
    _link(qwen2_gguf, two / "model.gguf")
    _link(qwen2_gguf, two / "Model.GGUF")
    models = scan([one, two])
    assert {n: m.file for n, m in models.items()} == {
        "model": one / "model.gguf", "model-2": two / "Model.GGUF", "model-3": two / "model.gguf"
    }  # fmt: skip
    assert list(scan([one, two])) == list(models)  # the same every time


def test_bad_files_are_errors_not_crashes(tmp_path: Path, qwen2_gguf: Path) -> None:
    (tmp_path / "notes.gguf").write_text("not a model")
    (tmp_path / "empty.gguf").touch()
    data = qwen2_gguf.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) // 2])
    write_minimal_gguf(tmp_path / "odd.gguf", "xyz")
    models = scan([tmp_path], now=time.time() + 60)  # long after the last write: nothing is pending
    assert {n: (m.ok, m.pending) for n, m in models.items()} == {
        n: (False, False) for n in ("notes", "empty", "cut", "odd")
    }
    assert "bad magic" in models["notes"].error and "truncated" in models["cut"].error
    assert "not supported by llama.cpp" in models["odd"].error
    assert models["cut"].view_fields()["error"] == models["cut"].error


def test_file_being_copied_is_pending(tmp_path: Path, qwen2_gguf: Path) -> None:
    data = qwen2_gguf.read_bytes()
    partial = tmp_path / "copying.gguf"
    partial.write_bytes(data[: len(data) // 3])
    model = scan([tmp_path])["copying"]
    assert model.pending and not model.ok and "truncated" in model.error
    assert model.view_fields()["error"]
    with partial.open("ab") as fh:
        fh.write(data[len(data) // 3 :])
    assert scan([tmp_path])["copying"].ok


def test_symlinks(tmp_path: Path, qwen2_gguf: Path) -> None:
    folder, outside = tmp_path / "models", tmp_path / "elsewhere"
    real = _link(qwen2_gguf, folder / "store" / "real.gguf")
    (folder / "inside.gguf").symlink_to(real)
    secret = _link(qwen2_gguf, outside / "secret.gguf")
    (folder / "escape.gguf").symlink_to(secret)
    (folder / "dangling.gguf").symlink_to(outside / "gone.gguf")
    models = scan([folder])
    assert models["inside"].ok and models["real"].ok
    assert "outside the models folders" in models["escape"].error
    assert "broken link" in models["dangling"].error


def test_resolve_model_path(tmp_path: Path, qwen2_gguf: Path) -> None:
    folder = tmp_path / "models"
    _link(qwen2_gguf, folder / "ok.gguf")
    (folder / "escape.gguf").symlink_to(qwen2_gguf)
    assert resolve_model_path([folder], "ok.gguf") == (folder / "ok.gguf").resolve()
    for bad in ("../x.gguf", "a/../../x.gguf", str(qwen2_gguf), "/etc/passwd", "", "..\\x.gguf"):
        with pytest.raises(BadRequest):
            resolve_model_path([folder], bad)
    with pytest.raises(BadRequest, match="outside"):
        resolve_model_path([folder], "escape.gguf")
    with pytest.raises(NotFound):
        resolve_model_path([folder], "nope.gguf")


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    assert scan([tmp_path / "does-not-exist"]) == {}
