"""Read a (sharded) safetensors checkpoint slice by slice, without torch and without loading it whole."""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import ModelFileError

# safetensors dtype -> numpy dtype of the stored bytes (bf16 is kept as uint16 and widened on read).
_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: file, dtype, shape and byte range of its data."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute offset of the first byte in `file`
    nbytes: int

    @property
    def n_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


def _read_header(path: Path) -> list[TensorEntry]:
    """The tensor table of one .safetensors file (an 8-byte length, then JSON)."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if length > _MAX_HEADER:
                raise ValueError("header too large")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise ModelFileError(
            f"{path} is not a readable safetensors file ({exc}). Download it again."
        ) from exc
    base = 8 + length
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        entries.append(
            TensorEntry(name, path, info["dtype"], tuple(info["shape"]), base + begin, end - begin)
        )
    return entries


def checkpoint_files(hf_dir: Path) -> list[Path]:
    """The safetensors shards of a checkpoint, in the order of its index file when there is one."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
        files = list(dict.fromkeys(weight_map.values()))
        missing = [f for f in files if not (hf_dir / f).is_file()]
        if missing:
            raise ModelFileError(
                f"{hf_dir} lists {len(missing)} missing shard(s) ({', '.join(missing[:3])}). "
                "Download the complete checkpoint."
            )
        return [hf_dir / f for f in files]
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        hint = (
            " It holds PyTorch .bin weights; re-save it with safe_serialization=True."
            if any(hf_dir.glob("*.bin"))
            else ""
        )
        raise ModelFileError(
            f"No *.safetensors weights in {hf_dir}.{hint} qwendesk converts safetensors checkpoints."
        )
    return files


class Checkpoint:
    """All tensors of a checkpoint folder, read a slice of rows at a time (never a whole tensor at once)."""

    def __init__(self, hf_dir: Path) -> None:
        self.entries: dict[str, TensorEntry] = {}
        self._files: dict[Path, BinaryIO] = {}
        for path in checkpoint_files(hf_dir):
            size = path.stat().st_size
            for entry in _read_header(path):
                _check_entry(entry, size)
                self.entries[entry.name] = entry

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __iter__(self) -> Iterator[TensorEntry]:
        return iter(self.entries.values())

    def read_rows(self, entry: TensorEntry, start: int, count: int) -> np.ndarray:
        """Rows [start, start+count) of the tensor viewed as (rows, last dim), in the stored dtype."""
        dtype = np.dtype(_DTYPES[entry.dtype])
        cols = entry.shape[-1] if entry.shape else 1
        fh = self._files.get(entry.file) or self._files.setdefault(entry.file, entry.file.open("rb"))
        fh.seek(entry.start + start * cols * dtype.itemsize)
        data = fh.read(count * cols * dtype.itemsize)
        if len(data) != count * cols * dtype.itemsize:
            raise ModelFileError(f"{entry.file} ended early while reading {entry.name}; download it again.")
        return np.frombuffer(data, dtype=dtype).reshape(count, cols)


def _check_entry(entry: TensorEntry, file_size: int) -> None:
    """Refuse non-float dtypes and byte ranges that do not fit the shape or the file, before writing anything."""
    if entry.dtype not in _DTYPES:
        raise ModelFileError(
            f"Tensor {entry.name} in {entry.file.name} has dtype {entry.dtype}; only float checkpoints "
            "(F32, F16, BF16) can be converted. Use the original, unquantized checkpoint."
        )
    itemsize = np.dtype(_DTYPES[entry.dtype]).itemsize
    if entry.nbytes != entry.n_elements * itemsize or entry.start + entry.nbytes > file_size:
        raise ModelFileError(
            f"Tensor {entry.name} does not fit {entry.file.name}; the file is truncated or corrupt. Download it again."
        )


def to_float(values: np.ndarray, dtype: str) -> np.ndarray:
    """Stored values as float32 (float16 stays float16); bf16 is the top half of a float32."""
    if dtype == "BF16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    if dtype == "F64":
        return values.astype(np.float32)
    return np.asarray(values)
