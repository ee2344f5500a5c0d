"""FolderWatcher: real watchdog events in temp folders, debounced into single callbacks."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from qwendesk.daemon.watcher import FolderWatcher
from qwendesk.models.folder import scan

DEBOUNCE = 0.3


class Calls:
    """Counts callbacks; wait() blocks until the count reaches n (or times out)."""

    def __init__(self) -> None:
        self.count, self.threads = 0, set()
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.count += 1
            self.threads.add(threading.current_thread().name)
            self._cond.notify_all()

    def wait(self, n: int, timeout: float = 10.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= n, timeout)

    def settle(self, quiet: float = DEBOUNCE * 4) -> int:
        """The count once no callback has arrived for `quiet` seconds."""
        last = -1
        while last != self.count:
            last = self.count
            time.sleep(quiet)
        return self.count


@pytest.fixture
def watched(tmp_path: Path):
    calls = Calls()
    folder = tmp_path / "models" / "new"  # missing: the watcher creates it
    with FolderWatcher([folder], calls, debounce=DEBOUNCE) as watcher:
        time.sleep(0.2)  # inotify is armed in start(); a little slack for slow CI
        yield folder, calls, watcher


def test_creates_missing_folder(watched) -> None:
    folder, calls, _ = watched
    assert folder.is_dir()
    assert calls.settle() == 0


def test_create_rename_delete(watched, qwen2_gguf: Path) -> None:
    folder, calls, _ = watched
    partial = folder / "m.gguf.part"
    partial.write_bytes(qwen2_gguf.read_bytes())
    assert calls.settle() == 0  # partial downloads are not models
    partial.rename(folder / "m.gguf")
    assert calls.wait(1)
    assert calls.settle() == 1
    (folder / "m.gguf").rename(folder / "renamed.gguf")
    assert calls.wait(2) and calls.settle() == 2
    (folder / "renamed.gguf").unlink()
    assert calls.wait(3) and calls.settle() == 3
    assert calls.threads == {"qwendesk-watcher"}  # never the caller's (event loop) thread


def test_ignores_irrelevant_files(watched) -> None:
    folder, calls, _ = watched
    (folder / "notes.txt").write_text("x")
    (folder / ".hidden.gguf").write_text("x")
    (folder / ".tmp").mkdir()
    (folder / ".tmp" / "x.gguf").write_text("x")
    assert calls.settle() == 0


def test_subfolder_and_its_files(watched, qwen2_gguf: Path) -> None:
    folder, calls, _ = watched
    sub = folder / "Qwen2.5-GGUF"
    sub.mkdir()
    assert calls.wait(1)
    calls.settle()
    before = calls.count
    (sub / "x.gguf").write_bytes(qwen2_gguf.read_bytes())
    assert calls.wait(before + 1)


def test_slow_copy_is_one_callback_after_completion(tmp_path: Path, qwen2_gguf: Path) -> None:
    data = qwen2_gguf.read_bytes()
    target = tmp_path / "big.gguf"
    chunk = len(data) // 8
    seen_pending = []
    scan([tmp_path])  # warm caches so the mid-copy scan below is quick
    calls = Calls()
    with FolderWatcher([tmp_path], calls, debounce=1.0), target.open("wb") as fh:
        time.sleep(0.2)
        for i in range(0, len(data), chunk):
            fh.write(data[i : i + chunk])
            fh.flush()
            if i == chunk * 2:
                seen_pending.append(scan([tmp_path])["big"].pending)
            time.sleep(0.1)  # a burst: never quiet for `debounce`
        fh.close()
        assert seen_pending == [True]  # incomplete and fresh: pending, not an error
        assert calls.wait(1)
        assert calls.settle(quiet=1.5) == 1
    assert scan([tmp_path])["big"].ok


def test_filter_picks_the_changes_that_matter(tmp_path: Path) -> None:
    calls = Calls()
    wanted = lambda parts, is_dir: not is_dir and parts[-1].endswith(".md")  # noqa: E731
    with FolderWatcher([tmp_path], calls, debounce=0.1, wanted=wanted):
        time.sleep(0.2)
        (tmp_path / "a.gguf").write_text("x")
        (tmp_path / ".hidden.md").write_text("x")
        assert calls.settle(quiet=0.5) == 0
        (tmp_path / "deep" / "er").mkdir(parents=True)
        (tmp_path / "deep" / "er" / "notes.md").write_text("x")
        assert calls.wait(1)


def test_failing_callback_does_not_stop_watching(tmp_path: Path) -> None:
    calls = Calls()

    def boom() -> None:
        calls()
        raise RuntimeError("handler bug")

    with FolderWatcher([tmp_path], boom, debounce=0.1):
        time.sleep(0.2)
        (tmp_path / "first.gguf").write_text("x")
        assert calls.wait(1)
        (tmp_path / "a.gguf").write_text("x")
        assert calls.wait(2)


def test_stop_is_idempotent_and_quiet(tmp_path: Path) -> None:
    calls = Calls()
    watcher = FolderWatcher([tmp_path], calls, debounce=0.1)
    watcher.start()
    (tmp_path / "early.gguf").write_text("x")
    watcher.stop()
    watcher.stop()
    (tmp_path / "late.gguf").write_text("x")
    time.sleep(0.8)
    assert calls.count == 0
