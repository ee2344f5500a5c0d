"""A real `qwendesk serve` (no Xinference needed) with hostile files in its models folders: it starts,
answers, lists them as errors, and a copy into a disk that fills up is a clean 507 that adds nothing."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from pathlib import Path

import pytest

from qwendesk.models.errors import NotEnoughSpace
from tests.conftest import DaemonProcess, free_port, link_model
from tests.models.gguf_files import write_many_entries, write_sized_gguf
from tests.models.small_disk import fill_disk, mount_tmpfs, unmount

MB = 2**20


def hostile_folder(folder: Path) -> dict[str, str]:
    """Files named *.gguf that are no model files; returns each one's name and the error it should get."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "pipe.gguf")
    os.mknod(folder / "zero.gguf", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    (folder / "dir.gguf").mkdir()
    (folder / "loop.gguf").symlink_to(folder / "loop.gguf")
    write_many_entries(folder / "crafted.gguf", 2_000_000)  # 36 MiB of one-byte entries
    return {
        "pipe": "named pipe",
        "zero": "is a device",
        "dir": "is a folder",
        "loop": "loop of links",
        "crafted": "2,000,000 metadata entries",
    }


@pytest.fixture
def disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount_tmpfs(mount, 256 * MB)  # RAM only as far as it is written
    yield mount
    unmount(mount)


def test_daemon_with_hostile_files_starts_and_adds_nothing_on_a_full_disk(
    tmp_path: Path, disk: Path, qwen2_gguf: Path
) -> None:
    models, hostile = disk / "models", tmp_path / "hostile"
    link_model(qwen2_gguf, models, "existing.gguf")
    expected = hostile_folder(hostile)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(hostile / "sock.gguf"))
    expected["sock"] = "is a socket"
    (tmp_path / "home").mkdir()
    proc = DaemonProcess(
        tmp_path / "home", free_port(), {"QWENDESK_MODELS_DIRS": f"{models}{os.pathsep}{hostile}"}
    )
    try:
        proc.start(timeout=60)  # the start-up scan finished: /health answers
        listed = {m["name"]: m for m in proc.client.models()}
        assert not listed["existing"]["error"]
        for name, message in expected.items():
            assert message in (listed[name]["error"] or ""), listed[name]
        before = sorted(listed)

        # Another program took most of the disk: a 240 MiB add is refused before anything is written.
        # (A disk that fills up during the copy is tested in-process, in test_disk_full.py, where the
        # moment can be chosen; across processes the copy can win that race.)
        source = write_sized_gguf(tmp_path / "downloads" / "big.gguf", 240 * MB, sparse=True)
        fill_disk(disk, leave=100 * MB)
        with pytest.raises(NotEnoughSpace) as info:
            proc.client.add(str(source))
        assert info.value.code == "not_enough_space" and "big.gguf" in info.value.message
        assert "Free up space" in info.value.message
        assert sorted(p.name for p in models.iterdir()) == ["existing.gguf"]
        assert sorted(m["name"] for m in proc.client.models()) == before
        assert proc.client.is_running() and proc.proc.poll() is None
    finally:
        server.close()
        proc.stop()
        with contextlib.suppress(OSError):  # let go of a scan blocked on the FIFO (the bug this guards)
            os.close(os.open(hostile / "pipe.gguf", os.O_WRONLY | os.O_NONBLOCK))
