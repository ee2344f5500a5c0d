"""Read and validate one GGUF file's header into a small summary: what the model is, and whether llama.cpp
can load it.

We parse the header ourselves (with gguf's constants, loaded without numpy) instead of using
`gguf.GGUFReader`: the reader builds one numpy view per vocabulary string (4.7 s for SmolLM2's 49k vocab
here, far more for Qwen's 151k), trusts offsets and counts, and maps the file, and a mapped file that is
truncated under the reader kills the whole process with SIGBUS. This parser:

* reads with plain, bounded reads (never `mmap`): a file that shrinks while we read is a clean error;
* opens regular files only, non-blocking: a FIFO, device or socket named `.gguf` cannot block or crash it;
* bounds the work (header bytes, entries, tensors, strings, time: see the limits below) and keeps only the
  values the daemon uses, so a crafted header costs a few MiB and about a second at most, never gigabytes;
* checks every count, string and tensor range against the file size, and never touches tensor data.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import struct
import time
from collections import Counter
from collections.abc import Mapping
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
MAX_TENSOR_NAME = 63  # GGML_MAX_NAME is 64 with the NUL: llama.cpp refuses longer tensor names

# Limits, measured on real-shaped headers (tests/models/gguf_files.py writes them with gguf.GGUFWriter):
# SmolLM2-135M 1.7 MiB (49k tokens, 272 tensors); Qwen2.5-0.5B (151,936 tokens + 151,387 merges, 290
# tensors) 4.8-6.3 MiB; a Llama-3-sized tokenizer (128k tokens + 280k merges) 4.9 MiB; a GPT-OSS-sized one
# (201k tokens + 446k merges) 7.6 MiB. Real files have 20-60 metadata entries and at most a few thousand
# tensors (experts are stored merged). Each limit is several times the largest real value.
MAX_HEADER_BYTES = 64 * 2**20  # metadata and tensor table
MAX_KV_COUNT = 16_384
MAX_TENSOR_COUNT = 65_536
MAX_ARRAY_STRINGS = 1 << 21  # strings in all string arrays together (GPT-OSS-sized tokenizer: 647k)
MAX_KEY_BYTES = 256  # real keys are under 70 bytes
# Real chat templates are 1-30 KB; a longer one is kept cut (see GGUFInfo.chat_template).
MAX_TEMPLATE_BYTES = 128 * 1024
MAX_TEXT_BYTES = 1024  # names, labels, types, special-token text
MAX_TAGS = 64
# The bounds above keep a parse under ~1 s; this stops a disk that crawls (checked between reads: a read
# the OS never returns from cannot be stopped from here).
HEADER_SECONDS = 30.0
_CHUNK = 1 << 20  # bytes per read: the buffer stays near 1 MiB whatever the header size

# Architectures llama.cpp (as bundled in xllamacpp) can load. gguf 0.19's MODEL_ARCH_NAMES all appear
# in xllamacpp's architecture table; the extras are newer names found there that gguf 0.19 lacks.
LLAMA_CPP_ARCHITECTURES: frozenset[str] = frozenset(MODEL_ARCH_NAMES.values()) | {
    "bailingmoe3", "clef", "cohere2moe", "deepseek32", "deepseek4", "gemma-embedding2",
    "gemma4-assistant", "laguna", "maple", "qwen4exp",
}  # fmt: skip
PROJECTOR_ARCHITECTURES = frozenset({"clip", "mmproj"})

_SCALARS: dict[GGUFValueType, struct.Struct] = {
    t: struct.Struct(fmt)
    for t, fmt in (
        (GGUFValueType.UINT8, "<B"), (GGUFValueType.INT8, "<b"), (GGUFValueType.UINT16, "<H"),
        (GGUFValueType.INT16, "<h"), (GGUFValueType.UINT32, "<I"), (GGUFValueType.INT32, "<i"),
        (GGUFValueType.FLOAT32, "<f"), (GGUFValueType.UINT64, "<Q"), (GGUFValueType.INT64, "<q"),
        (GGUFValueType.FLOAT64, "<d"), (GGUFValueType.BOOL, "<?"),
    )
}  # fmt: skip
_U32, _U64 = struct.Struct("<I"), struct.Struct("<Q")

# The values the daemon uses; every other key is skipped without being kept (or even read, for arrays).
_TEXT_KEYS: dict[str, int] = {
    "general.architecture": MAX_TEXT_BYTES,
    "general.name": MAX_TEXT_BYTES,
    "general.type": MAX_TEXT_BYTES,
    "general.size_label": MAX_TEXT_BYTES,
    "tokenizer.chat_template": MAX_TEMPLATE_BYTES,
    "clip.projector_type": MAX_TEXT_BYTES,
}
_SCALAR_KEYS = frozenset(
    {"general.file_type", "general.alignment", "split.no", "split.count", "split.tensors.count",
     "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
     "clip.has_vision_encoder", "clip.has_audio_encoder"}
)  # fmt: skip
_LIST_KEYS = frozenset({"general.tags"})
_TOKENS_KEY = "tokenizer.ggml.tokens"
# `<arch>.<suffix>` keys: kept for whichever prefix until the architecture is known, then filtered.
_ARCH_SUFFIXES = frozenset(
    {"context_length", "vocab_size", "block_count", "embedding_length", "attention.head_count",
     "attention.head_count_kv", "attention.key_length", "attention.value_length", "pooling_type"}
)  # fmt: skip


class TruncatedModelFile(ModelFileError):
    """The file is shorter than its header says: still being copied or downloaded, or cut off."""


@dataclass(frozen=True)
class GGUFInfo:
    """What one GGUF file holds, as far as registering and sizing a model needs (a small, bounded summary)."""

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
    # The file's own template (llama.cpp renders it from the file; we only look into it). One longer than
    # MAX_TEMPLATE_BYTES is kept cut to that length.
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
    projector_type: str | None = None  # `clip.projector_type` of a vision/audio projector
    has_vision_encoder: bool = False
    has_audio_encoder: bool = False
    # The few kept values (the keys above, bounded); never the tokenizer or the rest of the header.
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


@dataclass(frozen=True)
class _StringArray:
    """A string array left in the file: where it starts and how many strings it has."""

    offset: int
    count: int


class _Header:
    """Little-endian reads of a GGUF header through plain reads of at most ~1 MiB, each bounds-checked."""

    def __init__(self, fh: io.RawIOBase, size: int, label: str) -> None:
        self.fh, self.size, self.label = fh, size, label
        self.buf, self.base, self.pos = b"", 0, 0  # buf holds the file's bytes from offset `base`
        self.strings_left = MAX_ARRAY_STRINGS
        self.deadline = time.monotonic() + HEADER_SECONDS

    def check_end(self, end: int) -> None:
        """`end` (an offset the header reaches) lies inside the file and inside the header limit."""
        if end > self.size:
            raise TruncatedModelFile(
                f"{self.label} is truncated: its header needs more than the {self.size} bytes the file "
                "has — the copy or download did not finish. Copy it again."
            )
        if end > MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{self.label} has a header larger than {MAX_HEADER_BYTES >> 20} MiB (real models' are under "
                "10 MiB): it is corrupt or not a model file. Download or convert it again."
            )

    def _need(self, n: int) -> int:
        """Make `n` bytes at `pos` available in `buf`; returns their index there."""
        start = self.pos - self.base
        if start >= 0 and start + n <= len(self.buf):
            return start
        self.check_end(self.pos + n)
        self._fill(n)
        return 0

    def _fill(self, n: int) -> None:
        if time.monotonic() > self.deadline:
            raise ModelFileError(
                f"Reading {self.label}'s header took longer than {HEADER_SECONDS:.0f} s: the disk is too "
                "slow or not answering, or the file is crafted. Copy it to a local disk and try again."
            )
        want = max(n, min(_CHUNK, self.size - self.pos))
        self.fh.seek(self.pos)
        parts, got = [], 0
        while got < want:
            part = self.fh.read(want - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        if got < n:  # fstat said the bytes are there: the file shrank while we read it
            raise TruncatedModelFile(
                f"{self.label} changed while it was being read: it is now shorter than its header says "
                "(it is still being copied, or was replaced). Wait until the copy is complete."
            )
        self.buf, self.base = b"".join(parts), self.pos

    def scalar(self, st: struct.Struct) -> Any:
        i = self._need(st.size)
        self.pos += st.size
        return st.unpack_from(self.buf, i)[0]

    def skip(self, n: int) -> None:
        """Step over `n` bytes without reading them (a later read or the tensor-data check needs them)."""
        self.check_end(self.pos + n)
        self.pos += n

    def string(self, limit: int) -> str:
        """A string, of which at most `limit` bytes are read and kept."""
        return self.text(self.scalar(_U64), limit)

    def text(self, n: int, limit: int) -> str:
        """The `n`-byte string body at `pos`, of which at most `limit` bytes are read and kept."""
        self.check_end(self.pos + n)
        keep = min(n, limit)
        i = self._need(keep)
        text = self.buf[i : i + keep].decode("utf-8", errors="replace")
        self.pos += n
        return text

    def skip_strings(self, count: int) -> None:
        """Walk `count` strings' length prefixes (each is validated when the next one is read)."""
        unpack = _U64.unpack_from
        done = 0
        while done < count:
            self._need(8)
            buf, base, end = self.buf, self.base, len(self.buf) - 8
            off = self.pos - base
            while done < count and off <= end:  # as many as the buffer holds, without method calls
                off += 8 + unpack(buf, off)[0]
                done += 1
            self.pos = base + off
        self.check_end(self.pos)

    def value_type(self, key: str) -> GGUFValueType:
        raw = self.scalar(_U32)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise ModelFileError(
                f"{self.label} is corrupt: metadata '{key}' has unknown type {raw}."
            ) from None

    def value(self, key: str, vtype: GGUFValueType, keep: bool) -> Any:
        """One metadata value, read only when `keep`; arrays are walked, never kept (except small lists)."""
        if vtype == GGUFValueType.STRING:
            if keep:
                return self.string(_TEXT_KEYS.get(key, MAX_TEXT_BYTES))
            return self.skip(self.scalar(_U64))
        if vtype in _SCALARS:
            st = _SCALARS[vtype]
            return self.scalar(st) if keep else self.skip(st.size)
        if vtype != GGUFValueType.ARRAY:
            raise ModelFileError(f"{self.label} is corrupt: metadata '{key}' has unsupported type {vtype}.")
        itype = self.value_type(key)
        count = self.scalar(_U64)
        if itype == GGUFValueType.ARRAY:
            raise ModelFileError(f"{self.label} uses nested arrays in '{key}', which llama.cpp cannot read.")
        if itype != GGUFValueType.STRING:
            return self.skip(count * _SCALARS[itype].size)
        self.check_end(self.pos + count * 8)  # each string has at least its 8-byte length
        if count > self.strings_left:
            raise ModelFileError(
                f"{self.label} has more than {MAX_ARRAY_STRINGS:,} strings in its metadata arrays (real "
                "tokenizers have under 700,000): it is corrupt or not a model file. Download it again."
            )
        self.strings_left -= count
        if key == _TOKENS_KEY:
            ref = _StringArray(self.pos, count)
            self.skip_strings(count)
            return ref
        if keep and count <= MAX_TAGS:
            return [self.string(MAX_TEXT_BYTES) for _ in range(count)]
        return self.skip_strings(count)

    def string_at(self, ref: _StringArray, index: int) -> str | None:
        """Element `index` of a string array (walks the length prefixes: cheap for special-token ids)."""
        if not 0 <= index < ref.count:
            return None
        self.pos = ref.offset
        self.skip_strings(index)
        return self.string(MAX_TEXT_BYTES)


def _label(path: Path) -> str:
    return f"'{path.name}'"


def _not_regular(path: Path, mode: int) -> ModelFileError:
    label = _label(path)
    if stat.S_ISDIR(mode):
        return ModelFileError(f"{label} is a folder, not a GGUF file.")
    kind = (
        "a named pipe (FIFO)" if stat.S_ISFIFO(mode)
        else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
        else "a socket" if stat.S_ISSOCK(mode)
        else "not a regular file"
    )  # fmt: skip
    return ModelFileError(
        f"{label} is {kind}, not a model file. Remove it or rename it so it does not end in .gguf."
    )


def _open_error(path: Path, exc: OSError) -> ModelFileError:
    if isinstance(exc, PermissionError):
        return ModelFileError(f"{_label(path)} cannot be read: permission denied. Fix its permissions.")
    if isinstance(exc, FileNotFoundError):
        return ModelFileError(f"{_label(path)} does not exist (it was moved or deleted).")
    if isinstance(exc, IsADirectoryError):
        return ModelFileError(f"{_label(path)} is a folder, not a GGUF file.")
    if exc.errno == errno.ELOOP:
        return ModelFileError(
            f"{_label(path)} is a link that leads back to itself (a loop); fix or remove it."
        )
    return ModelFileError(f"{_label(path)} cannot be read: {exc.strerror or exc}.")


_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)  # fmt: skip


def open_regular(path: str | os.PathLike[str]) -> io.FileIO:
    """Open `path` for reading only if it is a regular file (after links); ModelFileError otherwise.

    Checked before opening (opening a FIFO blocks until a writer comes; opening a device can act on it)
    and again on the open file, which is opened non-blocking so a FIFO swapped in between cannot block.
    """
    path = Path(path)
    try:
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise _not_regular(path, before.st_mode)
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(path, exc) from exc
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise _open_error(path, exc) from exc
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_regular(path, mode)
    return io.FileIO(fd, "rb", closefd=True)


def read_gguf(path: str | os.PathLike[str], *, check_architecture: bool = True) -> GGUFInfo:
    """Parse and validate `path`'s header; every problem becomes a ModelFileError saying what to do."""
    path = Path(path)
    with open_regular(path) as fh:
        return read_gguf_from(fh, path, check_architecture=check_architecture)


def read_gguf_from(fh: io.RawIOBase, path: Path, *, check_architecture: bool = True) -> GGUFInfo:
    """read_gguf on a file already opened with open_regular (so a copy reads the very file checked)."""
    label = _label(path)
    try:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise TruncatedModelFile(
                f"{label} is empty (0 bytes) — the copy or download did not finish. Copy it again."
            )
        if size < 24:  # shorter than the fixed header: tell a cut-off download from a wrong file
            fh.seek(0)
            if fh.read(4) != b"GGUF":
                raise ModelFileError(f"{label} is not a GGUF file (bad magic). Use a .gguf model file.")
            raise TruncatedModelFile(
                f"{label} is truncated: only {size} bytes — the copy or download did not finish."
            )
        info = _parse(path, _Header(fh, size, label))
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


def _wanted(key: str, vtype: GGUFValueType) -> bool:
    """A value the summary keeps (`<arch>.*` ones only as numbers: strings there could be large)."""
    if key in _TEXT_KEYS or key in _SCALAR_KEYS or key in _LIST_KEYS:
        return True
    return vtype in _SCALARS and key.partition(".")[2] in _ARCH_SUFFIXES


def _parse(path: Path, h: _Header) -> GGUFInfo:
    label = h.label
    if h.scalar(_U32) != GGUF_MAGIC:
        raise ModelFileError(f"{label} is not a GGUF file (bad magic). Use a .gguf model file.")
    version = h.scalar(_U32)
    if version & 0xFFFF == 0 and version:
        raise ModelFileError(f"{label} is a big-endian GGUF, which this machine's llama.cpp cannot load.")
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(
            f"{label} GGUF version {version} is not supported (only 2 and 3). Re-download or re-convert it."
        )
    tensor_count, kv_count = h.scalar(_U64), h.scalar(_U64)
    if kv_count > MAX_KV_COUNT or tensor_count > MAX_TENSOR_COUNT:
        raise ModelFileError(
            f"{label} is corrupt: it claims {kv_count:,} metadata entries and {tensor_count:,} tensors (real "
            f"models have under {MAX_KV_COUNT:,} and {MAX_TENSOR_COUNT:,}). Download or convert it again."
        )
    # Every entry takes at least 12 (kv) or 24 (tensor) bytes.
    h.check_end(24 + kv_count * 12 + tensor_count * 24)
    meta = _read_metadata(h, kv_count)
    alignment = meta.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise ModelFileError(f"{label} is corrupt: general.alignment {alignment!r} is not a power of two.")
    tensors = _read_tensors(h, tensor_count, alignment)
    data_offset = -(-h.pos // alignment) * alignment
    data_end = data_offset + tensors.data_bytes
    if data_end > h.size:
        raise TruncatedModelFile(
            f"{label} is truncated: tensor data ends at {data_end} but the file has {h.size} bytes — "
            "the copy or download did not finish. Copy or download it again."
        )
    return _build(path, h, version, meta, tensors, data_offset)


def _read_metadata(h: _Header, kv_count: int) -> dict[str, Any]:
    """The kept values by key; every entry is walked and checked, duplicates refused."""
    seen: set[str] = set()
    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        n = h.scalar(_U64)
        if n > MAX_KEY_BYTES:
            h.check_end(h.pos + n)  # a cut-off file says so, rather than "corrupt"
            raise ModelFileError(f"{h.label} is corrupt: a metadata key is {n:,} bytes long.")
        key = h.text(n, MAX_KEY_BYTES)
        if key in seen:
            raise ModelFileError(f"{h.label} is corrupt: metadata key '{key}' appears twice.")
        seen.add(key)
        vtype = h.value_type(key)
        keep = _wanted(key, vtype)
        value = h.value(key, vtype, keep)
        if keep or key == _TOKENS_KEY:
            meta[key] = value
    return meta


@dataclass
class _Tensors:
    """What the tensor table tells: counts and sums, not the table itself."""

    count: int = 0
    parameters: int = 0
    data_bytes: int = 0  # from the data offset to the end of the last tensor
    weight_bytes: Counter[str] = field(default_factory=Counter)  # 2-D+ tensors' bytes by type name


def _read_tensors(h: _Header, count: int, alignment: int) -> _Tensors:
    label = h.label
    names: set[str] = set()
    out = _Tensors(count=count)
    for _ in range(count):
        n = h.scalar(_U64)
        if n > MAX_TENSOR_NAME:
            h.check_end(h.pos + n)
            raise ModelFileError(f"{label} has a tensor name of {n:,} bytes, which llama.cpp cannot load.")
        name = h.text(n, MAX_TENSOR_NAME)
        if name in names:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' appears twice.")
        names.add(name)
        n_dims = h.scalar(_U32)
        if not 1 <= n_dims <= MAX_DIMS:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' has {n_dims} dimensions.")
        dims = [h.scalar(_U64) for _ in range(n_dims)]
        raw_type = h.scalar(_U32)
        try:
            ttype = GGMLQuantizationType(raw_type)
        except ValueError:
            raise ModelFileError(
                f"{label} uses tensor type {raw_type} (tensor '{name}'), unknown to this llama.cpp."
            ) from None
        offset = h.scalar(_U64)
        block, type_size = GGML_QUANT_SIZES[ttype]
        if any(d <= 0 for d in dims) or dims[0] % block:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' has invalid shape {dims}.")
        if offset % alignment:
            raise ModelFileError(f"{label} is corrupt: tensor '{name}' is not aligned.")
        n_elems = _prod(dims)
        nbytes = n_elems // block * type_size
        out.parameters += n_elems
        out.data_bytes = max(out.data_bytes, offset + nbytes)
        if n_dims >= 2:
            out.weight_bytes[ttype.name] += nbytes
    return out


def _build(
    path: Path, h: _Header, version: int, meta: dict[str, Any], tensors: _Tensors, data_offset: int
) -> GGUFInfo:
    arch = meta.get("general.architecture")
    arch = arch if isinstance(arch, str) else None

    def integer(key: str) -> int | None:
        value = meta.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def text(key: str) -> str | None:
        value = meta.get(key)
        return value if isinstance(value, str) else None

    def arch_int(suffix: str) -> int | None:  # per-layer arrays (e.g. OpenELM's head counts) become None
        return integer(f"{arch}.{suffix}")

    n_params = tensors.parameters
    file_type = integer("general.file_type")
    tokens = meta.get(_TOKENS_KEY)
    tokens = tokens if isinstance(tokens, _StringArray) else None
    bos, eos = integer("tokenizer.ggml.bos_token_id"), integer("tokenizer.ggml.eos_token_id")
    template = text("tokenizer.chat_template")
    head_count = arch_int("attention.head_count")
    kept = {
        k: v
        for k, v in meta.items()
        if k in _TEXT_KEYS or k in _SCALAR_KEYS or k in _LIST_KEYS or (arch and k.startswith(f"{arch}."))
    }
    return GGUFInfo(
        path=path,
        file_size=h.size,
        version=version,
        architecture=arch,
        name=text("general.name"),
        general_type=text("general.type"),
        size_label=text("general.size_label") or (_size_label(n_params) if n_params else None),
        parameter_count=n_params,
        file_type=file_type,
        quantization=quantization_name(file_type, tensors.weight_bytes),
        context_length=arch_int("context_length"),
        chat_template=template if template and template.strip() else None,
        bos_token_id=bos,
        eos_token_id=eos,
        eot_token_id=integer("tokenizer.ggml.eot_token_id"),
        bos_token=h.string_at(tokens, bos) if tokens and bos is not None else None,
        eos_token=h.string_at(tokens, eos) if tokens and eos is not None else None,
        vocab_size=tokens.count if tokens else arch_int("vocab_size"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=head_count,
        head_count_kv=arch_int("attention.head_count_kv") or head_count,
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        pooling_type=arch_int("pooling_type"),
        split_no=integer("split.no"),
        split_count=integer("split.count"),
        split_tensors_count=integer("split.tensors.count"),
        tensor_count=tensors.count,
        tensor_data_bytes=tensors.data_bytes,
        data_offset=data_offset,
        projector_type=text("clip.projector_type"),
        has_vision_encoder=meta.get("clip.has_vision_encoder") is True,
        has_audio_encoder=meta.get("clip.has_audio_encoder") is True,
        metadata=kept,
    )


def _prod(dims: list[int]) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _size_label(n_params: int) -> str:
    """'0.5B' / '135M' style label, as convert_hf_to_gguf writes it."""
    return weight_count_label(n_params, min_digits=2)


def quantization_name(file_type: int | None, weight_bytes: Mapping[str, int]) -> str:
    """'Q4_K_M', 'Q8_0', 'F16'…: general.file_type, else the tensor type holding most weight bytes."""
    if file_type is not None:
        try:
            name = LlamaFileType(file_type & ~LlamaFileType.GUESSED).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return "F32" if name == "ALL_F32" else name.removeprefix("MOSTLY_")
    return Counter(weight_bytes).most_common(1)[0][0] if weight_bytes else "unknown"
