"""Models on disk: scanning folders into named models, bad files, links and names (no Xinference needed)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from qwendesk.models import folder as folder_module
from qwendesk.models.errors import BadRequest, Conflict, ModelFileError, NotFound
from qwendesk.models.folder import add_file, model_name_for, resolve_model_path, scan
from qwendesk.models.gguf_info import read_gguf
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


# ---- files that are not model files, though named like one ----------------------------------------
def _in_thread(fn, *args, timeout: float = 20.0):
    """fn(*args) on a daemon thread; returns its result, or fails if it is still blocked after `timeout`."""
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as exc:  # handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn.__name__} is blocked"
    if "error" in box:
        raise box["error"]
    return box["result"]


@pytest.fixture
def fifo(tmp_path: Path):
    """A FIFO named like a model; opened for writing at the end, so a reader blocked on it is let go."""
    path = tmp_path / "models" / "pipe.gguf"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    yield path
    with contextlib.suppress(OSError):  # ENXIO: no reader waiting, nothing to release
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))


def test_special_files_never_block_or_crash_the_scan(tmp_path: Path, fifo: Path, qwen2_gguf: Path) -> None:
    """A FIFO (which blocks whoever opens it for reading), a device, a socket, a folder and looping links,
    all named *.gguf: each is listed with what it is, the scan finishes, the real model beside them works."""
    folder = fifo.parent
    _link(qwen2_gguf, folder / "real.gguf")
    expected = {"pipe": "is a named pipe (FIFO), not a model file"}
    if os.geteuid() == 0:  # creating a device node needs root; /dev/zero's numbers
        os.mknod(folder / "zero.gguf", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        expected["zero"] = "is a device, not a model file"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.gguf"))
    expected["sock"] = "is a socket, not a model file"
    (folder / "dir.gguf").mkdir()
    expected["dir"] = "is a folder, not a GGUF file"
    (folder / "loop-a.gguf").symlink_to(folder / "loop-b.gguf")
    (folder / "loop-b.gguf").symlink_to(folder / "loop-a.gguf")
    (folder / "self.gguf").symlink_to(folder / "self.gguf")
    expected |= dict.fromkeys(("loop-a", "loop-b", "self"), "is a broken link (or a loop of links)")
    try:
        models = _in_thread(scan, [folder])
    finally:
        server.close()
    assert models["real"].ok
    assert {n: m.ok or m.pending for n, m in models.items() if n != "real"} == dict.fromkeys(expected, False)
    for name, message in expected.items():
        assert message in models[name].error, (name, models[name].error)


@pytest.mark.parametrize("kind", ["fifo", "device", "socket", "folder", "loop"])
def test_read_gguf_opens_regular_files_only(kind: str, tmp_path: Path, fifo: Path) -> None:
    path = {"fifo": fifo}.get(kind, tmp_path / f"{kind}.gguf")
    if kind == "device":
        path = Path("/dev/zero")  # readable forever, and its size says 0
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path)
    message = {
        "fifo": "named pipe", "device": "is a device", "socket": "is a socket", "folder": "is a folder",
        "loop": "leads back to itself",
    }[kind]  # fmt: skip
    with pytest.raises(ModelFileError, match=message):
        _in_thread(read_gguf, path)


def test_fifo_swapped_in_after_the_check_does_not_block(
    fifo: Path, qwen2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is a regular file when looked at, a FIFO when opened: the open does not wait for a writer."""
    real_stat = os.stat

    def stale_stat(path, *args, **kwargs):
        return real_stat(qwen2_gguf if Path(path) == fifo else path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stale_stat)
    with pytest.raises(ModelFileError, match="named pipe"):
        _in_thread(read_gguf, fifo)
    with pytest.raises(ModelFileError, match="named pipe"):
        _in_thread(add_file, fifo, fifo.parent.parent / "added")


# ---- the scan cache --------------------------------------------------------------------------------
def test_scan_cache_keeps_only_files_still_there(tmp_path: Path, qwen2_gguf: Path, qwen3_gguf: Path) -> None:
    folder = tmp_path / "models"
    model = _link(qwen2_gguf, folder / "m.gguf")
    assert scan([folder])["m"].info.architecture == "qwen2"
    assert [k[0] for k in folder_module._INFO_CACHE] == [model.resolve()]
    # Replaced by another file of the same size and mtime: the inode and ctime tell them apart.
    st = model.stat()
    other = folder / ".other"
    data = qwen3_gguf.read_bytes()
    other.write_bytes(data[: st.st_size].ljust(st.st_size, b"\0"))
    os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(other, model)
    assert scan([folder])["m"].info.architecture == "qwen3"
    model.unlink()
    assert scan([folder]) == {} and folder_module._INFO_CACHE == {}


# ---- adding a file ---------------------------------------------------------------------------------
def test_add_file_copies_a_valid_model(tmp_path: Path, qwen2_gguf: Path) -> None:
    folder = tmp_path / "models"
    source = _link(qwen2_gguf, tmp_path / "downloads" / "q.gguf")
    target = add_file(source, folder)
    assert target == folder / "q.gguf" and target.read_bytes() == qwen2_gguf.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["q.gguf"]
    with pytest.raises(Conflict, match="already in"):
        add_file(source, folder)
    with pytest.raises(NotFound):
        add_file(tmp_path / "nope.gguf", folder)
    (tmp_path / "notes.gguf").write_text("not a model")
    with pytest.raises(ModelFileError, match="bad magic"):
        add_file(tmp_path / "notes.gguf", folder)
    assert sorted(p.name for p in folder.iterdir()) == ["q.gguf"]


def test_add_file_refuses_a_source_that_changes_while_copied(
    tmp_path: Path, qwen2_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "src.gguf"
    shutil.copy(qwen2_gguf, source)
    folder = tmp_path / "models"
    real_free = folder_module.ensure_free_space

    def cut_after_check(*args, **kwargs):
        real_free(*args, **kwargs)
        os.truncate(source, 1000)  # the file is cut after it was validated, before it is copied

    monkeypatch.setattr(folder_module, "ensure_free_space", cut_after_check)
    with pytest.raises(Conflict, match="changed while it was being copied"):
        add_file(source, folder)
    assert list(folder.iterdir()) == []
