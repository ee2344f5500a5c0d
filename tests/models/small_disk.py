"""A small real filesystem to fill up: a tmpfs of its own (root only), and a way to take its free space."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

DISK_BYTES = 8 * 2**20


def mount_tmpfs(mount: Path, size: int) -> None:
    """Mount a tmpfs of `size` bytes at `mount`, or skip the test saying why it cannot be done here."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs the tests as root)")
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): {done.stderr.strip()}")


def unmount(mount: Path) -> None:
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of its own, so a write can really fail with ENOSPC (a full disk), unmounted after."""
    mount = tmp_path / "small-disk"
    mount_tmpfs(mount, DISK_BYTES)
    try:
        yield mount
    finally:
        unmount(mount)


def fill_disk(disk: Path, leave: int = 0) -> Path:
    """Take the free space of `disk` but `leave` bytes, with one file (fallocate: instant, no writes)."""
    filler = disk / ".filler"
    with filler.open("ab") as fh:
        free = shutil.disk_usage(disk).free - leave
        if free > 0:
            with contextlib.suppress(OSError):  # tmpfs counts pages: the last one may not fit
                os.posix_fallocate(fh.fileno(), fh.tell(), free)
    return filler
