"""Writing files safely: check the free space first, write `<name>.part`, rename when complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import Conflict, NotEnoughSpace

PART_SUFFIX = ".part"  # `x.gguf.part` is not a `.gguf`: watched folders never see a half-written file


def human_size(n: float) -> str:
    """Bytes in decimal units, as hubs and file managers list them: '1.1 GB', '491 MB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if abs(n) >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} B"


def ensure_free_space(
    folder: Path,
    needed: int,
    what: str,
    *,
    hint: str = "Free up space or choose another folder.",
    disk_usage: Callable[[Path], Any] | None = None,
) -> None:
    """Raise NotEnoughSpace before writing when `folder`'s disk has less than `needed` bytes (+2%) free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = (disk_usage or shutil.disk_usage)(folder).free
    if free < needed * 1.02:
        raise NotEnoughSpace(
            f"Not enough disk space: {what} needs {human_size(needed)}, {human_size(free)} free on {folder}. "
            f"{hint}"
        )


def part_path(out: Path) -> Path:
    """The temporary name a file is written under until it is complete."""
    return out.with_name(out.name + PART_SUFFIX)


def refuse_existing(out: Path, *, force: bool) -> None:
    """Never overwrite a model file unless asked to."""
    if out.exists() and not force:
        raise Conflict(f"{out} already exists. Pass --force to replace it or choose another --out.")


@contextmanager
def atomic_output(out: Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a `.part` path to write; rename it to `out` on success, delete it on any failure."""
    refuse_existing(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(out)
    try:
        yield part
        os.replace(part, out)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
