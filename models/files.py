"""Writing files safely: check the free space first, write `<name>.part`, rename when complete."""

from __future__ import annotations

import errno
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import Conflict, NotEnoughSpace, QwendeskError

PART_SUFFIX = ".part"  # `x.gguf.part` is not a `.gguf`: watched folders never see a half-written file
_DISK_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})  # no space, or over quota
# numpy's ndarray.tofile (how gguf's GGUFWriter writes tensors) reports a short write without an errno.
_SHORT_WRITE = re.compile(r"(\d+) requested and (\d+) written")


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


def is_disk_full(exc: BaseException | None, folder: Path | None = None) -> bool:
    """`exc` (or the error it was raised from) says the disk is full or the user's quota is used up.

    With `folder`, a short write without an errno (numpy's) counts when the rest of it does not fit in
    what `folder`'s disk has free now.
    """
    while exc is not None:
        if isinstance(exc, OSError):
            if exc.errno in _DISK_FULL:
                return True
            short = _SHORT_WRITE.search(str(exc)) if exc.errno is None and folder is not None else None
            if short and _free(folder) < int(short[1]) - int(short[2]):
                return True
        exc = exc.__cause__ or exc.__context__
    return False


def _free(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def free_space_text(folder: Path) -> str:
    """'12 MB free on /x', or '' when the disk cannot be asked."""
    try:
        return f"{human_size(shutil.disk_usage(folder).free)} free on {folder}"
    except OSError:
        return ""


@contextmanager
def atomic_output(out: Path, *, force: bool = False, what: str | None = None) -> Iterator[Path]:
    """Yield a `.part` path to write; rename it to `out` on success, delete it on any failure.

    A full disk while writing becomes NotEnoughSpace (the `.part` is gone, `out` untouched): `what` names
    the work in its message ("adding x.gguf"), else the file.
    """
    refuse_existing(out, force=force)
    out.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(out)
    try:
        yield part
        with part.open("rb+") as fh:  # on disk before the rename, so a crash never leaves a torn model
            os.fsync(fh.fileno())
        os.replace(part, out)
    except BaseException as exc:
        # Asked before the part is deleted: deleting it frees the space a short write is judged by.
        full = (
            isinstance(exc, Exception)
            and not isinstance(exc, QwendeskError)
            and is_disk_full(exc, out.parent)
        )
        part.unlink(missing_ok=True)
        if full:
            free = free_space_text(out.parent)
            raise NotEnoughSpace(
                f"The disk filled up while {what or f'writing {out.name}'}: the partial file was deleted and "
                f"nothing else changed{f' ({free})' if free else ''}. Free up space on that disk or choose "
                "another folder, then try again."
            ) from exc
        raise
