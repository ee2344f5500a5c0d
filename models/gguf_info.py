"""Read and validate one GGUF file's header: what the model is, and whether llama.cpp can load it.

We parse the header ourselves (with gguf's constants, loaded without numpy) instead of using
`gguf.GGUFReader`: the reader builds one numpy view per vocabulary string (4.7 s for SmolLM2's 49k vocab
here, far more for Qwen's 151k), and it trusts offsets and counts. This parser walks the same layout over
a read-only mmap, checks every count, string and tensor range against the file size, and never touches
tensor data.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelFileError
from .gguf_constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFValueType,
    LlamaFileType,
    weight_count_label,
)

SUPPORTED_VERSIONS = (2, 3)
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_COUNT = 1 << 24  # far above any real model's tensor or metadata count

# Architectures llama.cpp (as bundled in xllamacpp) can load. gguf 0.19's MODEL_ARCH_NAMES all appear
# in xllamacpp's architecture table; the extras are newer names found there that gguf 0.19 lacks.
LLAMA_CPP_ARCHITECTURES: frozenset[str] = frozenset(MODEL_ARCH_NAMES.values()) | {
    "bailingmoe3", "clef", "cohere2moe", "deepseek32", "deepseek4", "gemma-embedding2",
    "gemma4-assistant", "laguna", "maple", "qwen4exp",
}  # fmt: skip
PROJECTOR_ARCHITECTURES = frozenset({"clip", "mmproj"})

_SCALARS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h", GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f", GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d", GGUFValueType.BOOL: "<?",
}  # fmt: skip
# Arrays we keep in memory (small ones); the big tokenizer arrays are only walked.
_KEEP_ARRAY_MAX = 64


@dataclass(frozen=True)
class GGUFInfo:
    """What one GGUF file holds, as far as registering and sizing a model needs."""

    path: Path
    file_size: int
    version: int
    architecture: str | None
    name: str | None
    general_type: str | None
    size_label: str | None
    parameter_count: int
    file_type: int | None
    quantization: str
    context_length: int | None
    chat_template: str | None
    bos_token_id: int | None
    eos_token_id: int | None
    eot_token_id: int | None
    bos_token: str | None
    eos_token: str | None
    vocab_size: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    key_length: int | None
    value_length: int | None
    pooling_type: int | None  # `<arch>.pooling_type` (gguf PoolingType): set by embedding converters
    split_no: int | None
    split_count: int | None
    split_tensors_count: int | None
    tensor_count: int
    tensor_data_bytes: int
    data_offset: int
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def is_projector(self) -> bool:
        """A vision/audio projector (mmproj), not a model you can chat with."""
        return self.general_type == "mmproj" or self.architecture in PROJECTOR_ARCHITECTURES

    @property
    def tags(self) -> tuple[str, ...]:
        """`general.tags` (e.g. the hub's pipeline tag), lower-case; empty when absent or very long."""
        tags = self.metadata.get("general.tags")
        return tuple(t.lower() for t in tags if isinstance(t, str)) if isinstance(tags, list) else ()

    @property
    def is_split(self) -> bool:
        return (self.split_count or 1) > 1

    @property
    def supports_tools(self) -> bool:
        """The embedded chat template renders a `tools` list (so tool calls can work)."""
        return bool(self.chat_template) and "tools" in (self.chat_template or "")

    def kv_cache_bytes(self, n_ctx: int, bytes_per_elem: float = 2) -> int:
        """Memory of llama.cpp's K and V cache for `n_ctx` tokens (f16 = 2 bytes per element)."""
        if not (self.block_count and self.head_count_kv):
            return 0
        head_dim = (self.embedding_length or 0) // (self.head_count or 1)
        per_token = self.head_count_kv * ((self.key_length or head_dim) + (self.value_length or head_dim))
        return int(self.block_count * n_ctx * per_token * bytes_per_elem)


class _Header:
    """Bounds-checked little-endian reads over the mapped header."""

    def __init__(self, buf: mmap.mmap | bytes, size: int, label: str) -> None:
        self.buf, self.size, self.label, self.pos = buf, size, label, 0

    def _need(self, n: int) -> None:
        if n < 0 or self.pos + n > self.size:
            raise ModelFileError(
                f"{self.label} is truncated: its header needs more than the {self.size} bytes the file "
                "has — the copy or download did not finish. Copy it again."
            )

    def scalar(self, fmt: str) -> Any:
        n = struct.calcsize(fmt)
        self._need(n)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def string(self) -> str:
        n = self.scalar("<Q")
        self._need(n)
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.scalar("<Q")
        self._need(n)
        self.pos += n

    def value_type(self, key: str) -> GGUFValueType:
        raw = self.scalar("<I")
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise ModelFileError(
                f"{self.label} is corrupt: metadata '{key}' has unknown type {raw}."
            ) from None

    def value(self, key: str, vtype: GGUFValueType) -> Any:
        """One metadata value; big arrays are walked (validated) but only their length is kept."""
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype in _SCALARS:
            return self.scalar(_SCALARS[vtype])
        if vtype != GGUFValueType.ARRAY:
            raise ModelFileError(f"{self.label} is corrupt: metadata '{key}' has unsupported type {vtype}.")
        itype = self.value_type(key)
        count = self.scalar("<Q")
        if itype == GGUFValueType.ARRAY:
            raise ModelFileError(f"{self.label} uses nested arrays in '{key}', which llama.cpp cannot read.")
        if itype == GGUFValueType.STRING:
            self._need(count * 8)  # each string has at least its 8-byte length
            start = self.pos
            if count <= _KEEP_ARRAY_MAX:
                return [self.string() for _ in range(count)]
            for _ in range(count):
                self.skip_string()
            return _ArrayRef(itype, count, start)
        width = struct.calcsize(_SCALARS[itype])
        self._need(count * width)
        start = self.pos
        self.pos += count * width
        if count <= _KEEP_ARRAY_MAX:
            return list(struct.unpack_from(f"<{count}{_SCALARS[itype][1]}", self.buf, start))
        return _ArrayRef(itype, count, start)


@dataclass(frozen=True)
class _ArrayRef:
    """A big array left in the file: its element type, length and where it starts."""

    item_type: GGUFValueType
    count: int
    offset: int

    def __len__(self) -> int:
        return self.count


def _string_at(h: _Header, ref: _ArrayRef, index: int) -> str | None:
    """Element `index` of a string array, walking the length prefixes (cheap for special-token ids)."""
    if not 0 <= index < ref.count or ref.item_type != GGUFValueType.STRING:
        return None
    h.pos = ref.offset
    for _ in range(index):
        h.skip_string()
    return h.string()


def _label(path: Path) -> str:
    return f"'{path.name}'"


def _open_error(path: Path, exc: OSError) -> ModelFileError:
    if isinstance(exc, PermissionError):
        return ModelFileError(f"{_label(path)} cannot be read: permission denied. Fix its permissions.")
    if isinstance(exc, FileNotFoundError):
        return ModelFileError(f"{_label(path)} does not exist (it was moved or deleted).")
    if isinstance(exc, IsADirectoryError):
        return ModelFileError(f"{_label(path)} is a folder, not a GGUF file.")
    return ModelFileError(f"{_label(path)} cannot be read: {exc.strerror or exc}.")


def read_gguf(path: str | os.PathLike[str], *, check_architecture: bool = True) -> GGUFInfo:
    """Parse and validate `path`'s header; every problem becomes a ModelFileError saying what to do."""
    path = Path(path)
    label = _label(path)
    try:
        with path.open("rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise ModelFileError(
                    f"{label} is empty (0 bytes) — the copy or download did not finish. Copy it again."
                )
            if size < 24:  # shorter than the fixed header: tell a cut-off download from a wrong file
                if fh.read(4) != b"GGUF":
                    raise ModelFileError(f"{label} is not a GGUF file (bad magic). Use a .gguf model file.")
                raise ModelFileError(
                    f"{label} is truncated: only {size} bytes — the copy or download did not finish."
                )
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                info = _parse(path, buf, size)
    except ModelFileError:
        raise
    except OSError as exc:
        raise _open_error(path, exc) from exc
    except Exception as exc:  # a corrupt file must never take the daemon down
        raise ModelFileError(f"{label} is corrupt and cannot be read ({type(exc).__name__}: {exc}).") from exc
    if check_architecture:
        _check_architecture(info)
    return info


def _check_architecture(info: GGUFInfo) -> None:
    if info.split_no:  # shards after the first carry no model metadata
        return
    if not info.architecture:
        raise ModelFileError(f"{_label(info.path)} has no general.architecture; it is not a model file.")
    if info.architecture not in LLAMA_CPP_ARCHITECTURES and not info.is_projector:
        raise ModelFileError(
            f"{_label(info.path)} has architecture '{info.architecture}', which is not supported by "
            "llama.cpp. Use a GGUF of a supported model (e.g. Qwen2.5 or Qwen3)."
        )


def _parse(path: Path, buf: mmap.mmap, size: int) -> GGUFInfo:
    label = _label(path)
    h = _Header(buf, size, label)
    if h.scalar("<I") != GGUF_MAGIC:
        raise ModelFileError(f"{label} is not a GGUF file (bad magic). Use a .gguf model file.")
    version = h.scalar("<I")
    if version & 0xFFFF == 0 and version:
        raise ModelFileError(f"{label} is a big-endian GGUF, which this machine's llama.cpp cannot load.")
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(
            f"{label} GGUF version {version} is not supported (only 2 and 3). Re-download or re-convert it."
        )
    tensor_count, kv_count = h.scalar("<Q"), h.scalar("<Q")
    # Every entry takes at least 12 (kv) or 24 (tensor) bytes: larger counts are garbage, not a model.
    if kv_count > MAX_COUNT or tensor_count > MAX_COUNT or kv_count * 12 + tensor_count * 24 > size:
        raise ModelFileError(
            f"{label} is corrupt: it claims {kv_count} metadata entries and {tensor_count} tensors."
        )
    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = h.string()
        if key in meta:
            raise ModelFileError(f"{label} is corrupt: metadata key '{key}' appears twice.")
        meta[key] = h.value(key, h.value_type(key))
    tensors = [_tensor_info(h) for _ in range(tensor_count)]
    alignment = meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"{label} is corrupt: general.alignment {alignment!r} is not a power of two.")
    data_offset = -(-h.pos // alignment) * alignment
    data_end = _check_tensors(label, tensors, data_offset, alignment, size)
    return _build(path, size, version, meta, tensors, data_offset, data_end, h)


def _tensor_info(h: _Header) -> tuple[str, list[int], GGMLQuantizationType, int]:
    name = h.string()
    n_dims = h.scalar("<I")
    if not 1 <= n_dims <= MAX_DIMS:
        raise ModelFileError(f"{h.label} is corrupt: tensor '{name}' has {n_dims} dimensions.")
    dims = [h.scalar("<Q") for _ in range(n_dims)]
    raw_type = h.scalar("<I")
    try:
        ttype = GGMLQuantizationType(raw_type)
    except ValueError:
        raise ModelFileError(
            f"{h.label} uses tensor type {raw_type} (tensor '{name}'), unknown to this llama.cpp."
        ) from None
    return name, dims, ttype, h.scalar("<Q")


def _check_tensors(label: str, tensors: list, data_offset: int, alignment: int, size: int) -> int:
    """Every tensor's bytes lie inside the file; returns where the tensor data ends."""
    names: set[str] = set()
    data_end = data_offset
    for name, dims, ttype, offset in tensors:
        if name in names:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' appears twice.")
        names.add(name)
        block, type_size = GGML_QUANT_SIZES[ttype]
        if any(d <= 0 for d in dims) or dims[0] % block:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' has invalid shape {dims}.")
        if offset % alignment:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' is not aligned.")
        n_elems = 1
        for d in dims:
            n_elems *= d
        data_end = max(data_end, data_offset + offset + n_elems // block * type_size)
    if data_end > size:
        raise ModelFileError(
            f"{label} is truncated: tensor data ends at {data_end} but the file has {size} bytes — "
            "the copy or download did not finish. Copy or download it again."
        )
    return data_end


def _build(path, size, version, meta, tensors, data_offset, data_end, h: _Header) -> GGUFInfo:
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def arch_int(suffix: str) -> int | None:
        value = meta.get(f"{arch}.{suffix}")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    n_params = sum(_prod(dims) for _, dims, _, _ in tensors)
    file_type = meta.get("general.file_type")
    file_type = file_type if isinstance(file_type, int) else None
    tokens = meta.get("tokenizer.ggml.tokens")
    bos, eos = meta.get("tokenizer.ggml.bos_token_id"), meta.get("tokenizer.ggml.eos_token_id")
    template = meta.get("tokenizer.chat_template")
    head_count = arch_int("attention.head_count")  # per-layer arrays (e.g. OpenELM) become None
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        architecture=arch,
        name=meta.get("general.name"),
        general_type=meta.get("general.type"),
        size_label=meta.get("general.size_label") or (_size_label(n_params) if n_params else None),
        parameter_count=n_params,
        file_type=file_type,
        quantization=quantization_name(file_type, tensors),
        context_length=arch_int("context_length"),
        chat_template=template if isinstance(template, str) and template.strip() else None,
        bos_token_id=bos if isinstance(bos, int) else None,
        eos_token_id=eos if isinstance(eos, int) else None,
        eot_token_id=meta.get("tokenizer.ggml.eot_token_id"),
        bos_token=_token_text(h, tokens, bos),
        eos_token=_token_text(h, tokens, eos),
        vocab_size=len(tokens) if tokens is not None else arch_int("vocab_size"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        pooling_type=arch_int("pooling_type"),
        split_no=meta.get("split.no"),
        split_count=meta.get("split.count"),
        split_tensors_count=meta.get("split.tensors.count"),
        tensor_count=len(tensors),
        tensor_data_bytes=data_end - data_offset,
        data_offset=data_offset,
        metadata={k: v for k, v in meta.items() if not isinstance(v, _ArrayRef)},
    )


def _prod(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _size_label(n_params: int) -> str:
    """'0.5B' / '135M' style label, as convert_hf_to_gguf writes it."""
    return weight_count_label(n_params, min_digits=2)


def _token_text(h: _Header, tokens: Any, index: Any) -> str | None:
    if not isinstance(index, int):
        return None
    if isinstance(tokens, list):
        return tokens[index] if 0 <= index < len(tokens) else None
    if isinstance(tokens, _ArrayRef):
        return _string_at(h, tokens, index)
    return None


def quantization_name(file_type: int | None, tensors: list) -> str:
    """'Q4_K_M', 'Q8_0', 'F16'…: general.file_type, else the type holding most weight bytes."""
    if file_type is not None:
        try:
            name = LlamaFileType(file_type & ~LlamaFileType.GUESSED).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    weight: Counter[str] = Counter()
    for _, dims, ttype, _ in tensors:
        if len(dims) >= 2:
            block, type_size = GGML_QUANT_SIZES[ttype]
            weight[ttype.name] += _prod(dims) // block * type_size
    return weight.most_common(1)[0][0] if weight else "unknown"
