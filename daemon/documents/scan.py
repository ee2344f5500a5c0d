"""Walk a collection's folder: the files to index, and the ones skipped with a reason.

Nothing outside the folder is read: a symbolic link is followed only when its target resolves inside the
folder, each folder is entered once (by device and inode, so link loops end), hidden files and folders are
left out (as the watcher leaves them out), and files above the size limit are skipped before being opened.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .parsers import is_supported

MAX_FILE_BYTES = 64 * 1024 * 1024
IGNORED_FOLDERS = {"__pycache__", "node_modules"}  # tool output, never documents


@dataclass(frozen=True)
class Candidate:
    """A file to index: `rel` its path below the folder (with /), `real` the file to read."""

    rel: str
    real: Path
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    rel: str
    reason: str
    size: int = 0
    mtime_ns: int = 0


@dataclass
class ScanResult:
    candidates: list[Candidate] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def wanted_change(parts: tuple[str, ...], is_dir: bool) -> bool:
    """FolderWatcher filter: a change to a folder or to a file a collection reads."""
    if any(part in IGNORED_FOLDERS for part in parts[:-1]):
        return False
    return is_dir or is_supported(parts[-1])


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def scan_folder(root: Path, max_bytes: int = MAX_FILE_BYTES) -> ScanResult:
    """Every supported file below `root` (which must exist), in path order.

    Folders reached through a symbolic link are entered after all real ones, so a file reachable both
    ways is indexed under its real path, and a link back to a folder already seen is skipped.
    """
    out = ScanResult()
    base = root.resolve(strict=True)
    seen_dirs: set[tuple[int, int]] = set()
    stack: list[tuple[Path, str]] = [(base, "")]
    linked: list[tuple[Path, str]] = []
    while stack or linked:
        folder, prefix = stack.pop() if stack else linked.pop(0)
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen_dirs:
                out.skipped.append(Skipped(prefix.rstrip("/"), "folder already indexed through another path"))
                continue
            seen_dirs.add((st.st_dev, st.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            out.skipped.append(Skipped(prefix.rstrip("/") or ".", f"cannot read this folder: {exc.strerror}"))
            continue
        subfolders = []
        for entry in entries:
            if entry.name.startswith(".") or entry.name in IGNORED_FOLDERS:
                continue
            rel = prefix + entry.name
            try:
                found = _classify(entry, rel, base, max_bytes)
            except OSError as exc:
                found = Skipped(rel, f"cannot read: {exc.strerror or exc}")
            if isinstance(found, Path):
                (linked if entry.is_symlink() else subfolders).append((found, rel + "/"))
            elif isinstance(found, (Skipped, Candidate)):
                (out.skipped if isinstance(found, Skipped) else out.candidates).append(found)
        stack.extend(reversed(subfolders))
    return out


def _classify(
    entry: os.DirEntry[str], rel: str, base: Path, max_bytes: int
) -> Path | Candidate | Skipped | None:
    """A folder to enter, a file to index, a skipped entry, or None (an unsupported file, left out)."""
    path = Path(entry.path)
    if entry.is_symlink():
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError):
            return Skipped(rel, "symbolic link that is broken or loops: fix or remove it")
        if not target.is_relative_to(base):
            return Skipped(rel, "symbolic link to outside the collection folder: not followed")
        path = target
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        return path
    if not is_supported(entry.name):
        return None
    if not stat.S_ISREG(st.st_mode):
        return Skipped(rel, "not a regular file")
    if st.st_size > max_bytes:
        return Skipped(
            rel,
            f"larger than the {_mib(max_bytes)} limit ({_mib(st.st_size)}): split it into smaller files",
            st.st_size,
            st.st_mtime_ns,
        )
    if not os.access(path, os.R_OK):
        return Skipped(rel, "no permission to read it", st.st_size, st.st_mtime_ns)
    return Candidate(rel, path, st.st_size, st.st_mtime_ns)
