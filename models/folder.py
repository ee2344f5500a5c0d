"""Models on disk: the models folders scanned into named models, each with its files, header and kind.

Layout: `*.gguf` files directly in a models folder or in one sub-folder level (`<folder>/<repo>/x.gguf`,
as hub downloads are usually kept); deeper files, hidden files/folders and partial downloads are
ignored. Split files (`<base>-00001-of-00003.gguf`) form one model; vision projectors (mmproj) are
paired with their model and never listed on their own.
"""

from __future__ import annotations

import io
import os
import re
import stat
import time
import unicodedata
import zlib
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import BadRequest, Conflict, ModelFileError, NotFound
from .families import Registration, registration_for
from .files import atomic_output, ensure_free_space
from .gguf_info import GGUFInfo, TruncatedModelFile, open_regular, read_gguf, read_gguf_from

PENDING_SECONDS = 10.0  # a truncated file touched this recently is still being copied
SPLIT_RE = re.compile(r"^(?P<base>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
_NAME_BAD = re.compile(r"[^a-z0-9._-]+")
_QUANT_TAIL = re.compile(r"([._-](i?q\d[a-z0-9_]*|f16|f32|bf16|fp16|fp32))+$")
VISION_ARCHITECTURES = frozenset(
    {"qwen2vl", "qwen3vl", "qwen3vlmoe", "qwen35", "qwen35moe", "gemma3", "gemma3n", "gemma4", "llama4",
     "mistral3", "hunyuan_vl", "paddleocr", "deepseek2-ocr", "cogvlm", "lfm2"}
)  # fmt: skip


@dataclass
class ModelFiles:
    """One model found on disk: its files, what they hold, and whether it can be registered."""

    name: str
    files: list[Path]  # shards in order, as found in the folder (not symlink-resolved)
    mmproj: Path | None = None
    info: GGUFInfo | None = None  # the first shard's header; parameter/bytes totals cover all shards
    error: str | None = None
    pending: bool = False  # still being copied: not registered yet, re-checked later
    size_bytes: int = 0
    mtime: float = 0.0
    registration: Registration | None = field(default=None, repr=False)

    @property
    def file(self) -> Path:
        return self.files[0]

    @property
    def folder(self) -> Path:
        return self.files[0].parent

    @property
    def quantization(self) -> str | None:
        return self.info.quantization if self.info else None

    @property
    def ok(self) -> bool:
        """Valid, complete and registrable."""
        return self.error is None and not self.pending and self.registration is not None

    def fingerprint(self) -> tuple:
        """Changes whenever the files change: the manager re-registers when this differs."""
        return (
            tuple(map(str, self.files)),
            str(self.mmproj),
            self.size_bytes,
            self.mtime,
            self.error,
            self.pending,
        )

    def view_fields(self) -> dict[str, Any]:
        """The ModelView fields this scan knows (state and n_ctx come from the manager)."""
        info, reg = self.info, self.registration
        return {
            "name": self.name,
            "file": str(self.file),
            "files": [str(f) for f in self.files],
            "mmproj": str(self.mmproj) if self.mmproj else None,
            "architecture": info.architecture if info else None,
            "parameters": info.size_label if info else None,
            "parameter_count": info.parameter_count if info else None,
            "quantization": self.quantization,
            "size_bytes": self.size_bytes,
            "context_length": info.context_length if info else None,
            "family": reg.model_family if reg else None,
            "chat_template": bool(info and info.chat_template),
            "abilities": list(reg.abilities) if reg else [],
            "error": self.error or ("still being copied" if self.pending else None),
        }


# ---- names ---------------------------------------------------------------------------------------
def model_name_for(path: str | Path, reserved: Collection[str] = ()) -> str:
    """Deterministic, URL-safe, lower-case name from a file name (no `.gguf`, no split suffix).

    A name in `reserved` (e.g. one the supervisor has built in) gets a `-gguf` suffix.
    """
    stem = Path(path).name
    split = SPLIT_RE.match(stem)
    stem = split["base"] if split else re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    ascii_ = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode().lower()
    name = _NAME_BAD.sub("-", ascii_).strip("-._")
    name = re.sub(r"-{2,}", "-", name)
    if not name:  # e.g. an all-Chinese file name: stable, still unique per file name
        # crc32, not hash(): str hashes are salted per process and the name must stay the same
        name = "model-" + format(zlib.crc32(stem.encode("utf-8")), "x")[:8]
    if name in reserved:
        name += "-gguf"
    return name


# ---- paths ---------------------------------------------------------------------------------------
def _inside(path: Path, folders: list[Path]) -> bool:
    return any(path == f or f in path.parents for f in folders)


def resolve_model_path(folders: list[Path], name: str) -> Path:
    """A file named relative to the models folders, guaranteed (after symlinks) to stay inside them."""
    roots = [Path(f).resolve() for f in folders]
    rel = Path(name)
    if not name or rel.is_absolute() or name.startswith(("/", "\\")) or ".." in re.split(r"[\\/]", name):
        raise BadRequest(f"'{name}' is not a valid model file name: give a name inside the models folder.")
    for root in roots:
        candidate = root / rel
        if candidate.exists() or candidate.is_symlink():
            resolved = candidate.resolve()
            if not _inside(resolved, roots):
                raise BadRequest(f"'{name}' points outside the models folders; move the file into one.")
            return resolved
    raise NotFound(f"No file '{name}' in the models folders ({', '.join(map(str, roots))}).")


def _candidates(folder: Path) -> list[Path]:
    """`*.gguf` (any case) at the top of `folder` and one level down; hidden entries skipped."""
    found: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith("."):
            continue
        if entry.name.lower().endswith(".gguf"):
            found.append(entry)
        elif entry.is_dir() and not entry.is_symlink():
            try:
                found += sorted(
                    p
                    for p in entry.iterdir()
                    if p.name.lower().endswith(".gguf") and not p.name.startswith(".")
                )
            except OSError:
                continue
    return found


# ---- scanning ------------------------------------------------------------------------------------
# Header summaries (each a few KiB, see gguf_info) by file identity: a rescan re-reads only files that
# changed, and each scan keeps only the files it saw, so a deleted or replaced file's summary goes too.
_CacheKey = tuple[Path, int, int, int, int, int]
_INFO_CACHE: dict[_CacheKey, GGUFInfo] = {}


def _read(
    path: Path, roots: list[Path], now: float, seen: dict[_CacheKey, GGUFInfo]
) -> tuple[GGUFInfo | None, str | None, bool]:
    """(info, error, pending) for one file, never raising."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing target, or a loop of links
        return None, f"'{path.name}' is a broken link (or a loop of links); fix or remove it.", False
    if not _inside(target, roots):
        return (
            None,
            f"'{path.name}' links to {target}, outside the models folders; move the file in instead.",
            False,
        )
    try:
        return _read_cached(target, seen), None, False
    except ModelFileError as exc:
        try:
            recent = now - target.stat().st_mtime < PENDING_SECONDS
        except OSError:
            recent = False
        return None, exc.message, isinstance(exc, TruncatedModelFile) and recent


def _read_cached(path: Path, seen: dict[_CacheKey, GGUFInfo]) -> GGUFInfo:
    """read_gguf, skipped when the file (inode, size, mtime, ctime) is unchanged; records it in `seen`."""
    try:
        st = path.stat()
    except OSError:
        return read_gguf(path)  # raises the ModelFileError that says why
    key = (path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    info = _INFO_CACHE.get(key) or read_gguf(path)
    seen[key] = info
    return info


def _stat(paths: list[Path]) -> tuple[int, float]:
    size, mtime = 0, 0.0
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        size, mtime = size + st.st_size, max(mtime, st.st_mtime)
    return size, mtime


def _group(files: list[Path]) -> list[list[Path] | tuple[str, list[Path]]]:
    """Singles as [path]; split sets as their ordered shards, or (error, present shards) if incomplete."""
    groups: list = []
    splits: dict[tuple[Path, str, int], dict[int, Path]] = {}
    for f in files:
        m = SPLIT_RE.match(f.name)
        if m and int(m["count"]) > 1:
            splits.setdefault((f.parent, m["base"].lower(), int(m["count"])), {})[int(m["no"])] = f
        else:
            groups.append([f])
    for (_, _, count), parts in splits.items():
        ordered = [parts[i] for i in sorted(parts)]
        missing = [f"{i:05d}-of-{count:05d}" for i in range(1, count + 1) if i not in parts]
        if missing:
            groups.append((f"'{ordered[0].name}' is one of {count} parts, but part(s) {', '.join(missing)} "
                           "are missing. Copy all parts into the same folder.", ordered))  # fmt: skip
        else:
            groups.append(ordered)
    return groups


def _projector_key(path: Path) -> str:
    """Name with 'mmproj' and quantization tags removed: `mmproj-X-f16` and `X-Q4_K_M` both give `x`."""
    stem = SPLIT_RE.sub(r"\g<base>", path.name)
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE).lower()
    stem = re.sub(r"(^|[._-])mmproj([._-]|$)", r"\1", stem).strip("._-")
    return _QUANT_TAIL.sub("", stem)


def _pair_projectors(models: list[ModelFiles], projectors: list[Path]) -> None:
    """Give each vision model its projector: by name first, else the folder's only projector."""
    by_key = {_projector_key(p): p for p in projectors}
    for m in models:
        m.mmproj = by_key.get(_projector_key(m.file))
    used = {m.mmproj for m in models if m.mmproj}
    for folder in {p.parent for p in projectors}:
        free = [p for p in projectors if p.parent == folder and p not in used]
        here = [m for m in models if m.folder == folder and m.info and not m.mmproj]
        vision = [m for m in here if m.info.architecture in VISION_ARCHITECTURES] or here
        if len(free) == 1 and len(vision) == 1:
            vision[0].mmproj = free[0]


def _build(group, roots: list[Path], now: float, seen: dict[_CacheKey, GGUFInfo]) -> ModelFiles | Path:
    """A ModelFiles, or the path of a projector (paired later)."""
    error = None
    if isinstance(group, tuple):
        error, group = group
    model = ModelFiles(name="", files=list(group))
    model.size_bytes, model.mtime = _stat(model.files)
    if error:
        model.error, model.pending = error, now - model.mtime < PENDING_SECONDS
        return model
    infos = []
    for f in model.files:
        info, err, pending = _read(f, roots, now, seen)
        if err:
            model.error, model.pending = err, pending
            return model
        infos.append(info)
    first = infos[0]
    if first.is_projector:
        return model.file
    if len(infos) > 1:
        first = _merge_shards(infos)
    model.info = first
    return model


def _merge_shards(infos: list[GGUFInfo]) -> GGUFInfo:
    """The first shard's metadata with parameter and byte totals over all shards."""
    first = infos[0]
    params = sum(i.parameter_count for i in infos)
    return replace(
        first,
        parameter_count=params,
        tensor_count=sum(i.tensor_count for i in infos),
        tensor_data_bytes=sum(i.tensor_data_bytes for i in infos),
    )


def _register(model: ModelFiles) -> None:
    if model.info is None or model.error:
        return
    try:
        model.registration = registration_for(model.info, has_mmproj=model.mmproj is not None)
    except ModelFileError as exc:
        model.error = exc.message


def scan(
    folders: list[Path], *, reserved: Collection[str] = (), now: float | None = None
) -> dict[str, ModelFiles]:
    """Every model in `folders`, by unique name; bad files are entries with `error` (or `pending`)."""
    now = time.time() if now is None else now
    roots = [Path(f).resolve() for f in folders]
    models: list[ModelFiles] = []
    projectors: list[Path] = []
    seen: dict[_CacheKey, GGUFInfo] = {}
    for root in roots:
        for group in _group(_candidates(root)):
            built = _build(group, roots, now, seen)
            (projectors.append if isinstance(built, Path) else models.append)(built)
    _INFO_CACHE.clear()
    _INFO_CACHE.update(seen)
    _pair_projectors(models, projectors)
    result: dict[str, ModelFiles] = {}
    for m in models:  # already in folder order, then path order: collisions resolve the same way each scan
        base = model_name_for(m.file, reserved)
        name, n = base, 2
        while name in result:
            name, n = f"{base}-{n}", n + 1
        m.name = name
        _register(m)
        result[name] = m
    return result


# ---- adding a file -------------------------------------------------------------------------------
def add_file(source: Path, folder: Path) -> Path:
    """Copy a GGUF into `folder` (via a `.part` name, so a watcher sees it once, whole); returns the new path.

    The source must be a regular file that is a valid GGUF before anything is written: a link named
    `*.gguf` that points at a secret or at /proc is refused, never copied, and a FIFO never blocks us. The
    file checked is the file copied (one open), and the copy is checked again before it gets its name.
    A full disk is NotEnoughSpace with nothing left behind.
    """
    if not source.is_absolute():
        raise BadRequest(f"Give an absolute path (got '{source}').")
    if source.suffix.lower() != ".gguf":
        raise BadRequest(f"{source.name} is not a .gguf file.")
    try:
        st = source.stat()
    except OSError:
        raise NotFound(f"No file at {source}.") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{source} is not a regular file.")
    with open_regular(source) as src:
        read_gguf_from(src, source)  # raises ModelFileError for anything that is not a model
        size = os.fstat(src.fileno()).st_size
        target = folder / source.name
        if target.exists():
            raise Conflict(f"{target.name} is already in {folder}.")
        ensure_free_space(folder, size, f"adding {source.name}")
        with atomic_output(target, what=f"adding {source.name} to {folder}") as part:
            _copy_exactly(src, source, part, size)
            try:
                read_gguf(part)
            except ModelFileError:
                raise Conflict(
                    f"{source.name} changed while it was being copied; try again once it is complete."
                ) from None
    return target


def _copy_exactly(src: io.RawIOBase, source: Path, dest: Path, size: int) -> None:
    """Copy `size` bytes from the open `src` and refuse a source that is shorter or longer (it changed)."""
    src.seek(0)
    with dest.open("xb") as dst:
        left = size
        while left:
            chunk = src.read(min(left, 8 * 2**20))
            if not chunk:
                break
            dst.write(chunk)
            left -= len(chunk)
        if left or src.read(1):
            raise Conflict(f"{source.name} changed while it was being copied; try again once it is complete.")
