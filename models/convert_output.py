"""Writing a model file safely: check the free space first, write `<name>.part`, rename when complete."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import NotEnoughSpace, QwendeskError

# (bytes done, bytes total, what is being worked on)
ProgressFn = Callable[[int, int, str], None]

_GB = 1024**3


def ensure_space(folder: Path, needed: int, what: str) -> None:
    """Raise NotEnoughSpace before writing when `folder`'s disk has less than `needed` bytes (+2%) free."""
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed * 1.02:
        raise NotEnoughSpace(
            f"{what} needs about {needed / _GB:.2f} GB free in {folder}, but only {free / _GB:.2f} GB is free. "
            "Free up space or choose an --out on another disk."
        )


def part_path(out: Path) -> Path:
    """The temporary name a file is written under; watchers only look at *.gguf, so they never see it."""
    return out.with_name(out.name + ".part")


def refuse_existing(out: Path, *, force: bool) -> None:
    """Never overwrite a model file unless asked to."""
    if out.exists() and not force:
        raise QwendeskError(
            f"{out} already exists. Pass --force to replace it or choose another --out.", status=409
        )


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
