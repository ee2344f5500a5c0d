"""Convert a Hugging Face checkpoint (Qwen2/2.5/3 chat model, BERT embedder or reranker) into a GGUF, one tensor
at a time: plan every tensor first, then write header, metadata and tensors with gguf.GGUFWriter."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from gguf import (
    GGML_QUANT_VERSION,
    MODEL_ARCH,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
)
from gguf.quants import quant_shape_to_byte_shape, quantize
from gguf.utility import size_label

from . import convert_bert, convert_qwen
from .convert_output import CONVERT_TYPES, ProgressFn, read_json
from .convert_output import DIRECT_TYPES as DIRECT_TYPE_NAMES
from .convert_output import QUANT_TYPES as QUANT_TYPE_NAMES
from .convert_safetensors import Checkpoint, TensorEntry
from .errors import ModelFileError, NotEnoughSpace
from .files import atomic_output, ensure_free_space, is_disk_full, part_path, refuse_existing

SUPPORTED_TEXT = (
    "qwendesk converts Qwen2, Qwen2.5 and Qwen3 (dense) chat checkpoints "
    "and BERT embedding models and rerankers"
)
# Output types written directly here; the others go through llama.cpp's quantizer (see quantize.py).
DIRECT_TYPES = {
    "f32": (LlamaFileType.ALL_F32, GGMLQuantizationType.F32),
    "f16": (LlamaFileType.MOSTLY_F16, GGMLQuantizationType.F16),
    "bf16": (LlamaFileType.MOSTLY_BF16, GGMLQuantizationType.BF16),
    "q8_0": (LlamaFileType.MOSTLY_Q8_0, GGMLQuantizationType.Q8_0),
}
assert set(DIRECT_TYPES) == set(DIRECT_TYPE_NAMES)
# BERT's graph adds a row of these straight to F32 activations, and ggml's CPU add has no F16 operand there.
F32_TENSORS = frozenset({"position_embd.weight", "token_types.weight"})
CHUNK_BYTES = 16 * 1024 * 1024  # rows are converted in slices of about this many float32 bytes


class Vocab(Protocol):
    """A tokenizer ready for a GGUF (convert_tokenizer.QwenVocab, convert_wordpiece.WordPieceVocab)."""

    warnings: list[str]

    def add_to(self, writer: GGUFWriter) -> None: ...

    def metadata_bytes(self) -> int: ...


class ModelConfig(Protocol):
    """What the converter needs from one architecture (convert_qwen.QwenConfig, convert_bert.BertConfig)."""

    arch: MODEL_ARCH
    vocab_size: int
    hidden_size: int
    n_layers: int

    @property
    def arch_name(self) -> str: ...

    @property
    def kind(self) -> str: ...

    def gguf_name(self, hf_name: str) -> str | None: ...

    def required_tensors(self) -> set[str]: ...

    def add_hyperparameters(self, writer: GGUFWriter) -> None: ...

    def load_vocab(self, hf_dir: Path) -> Vocab: ...


@dataclass(frozen=True)
class TensorPlan:
    """One source tensor and how it is written: GGUF name, type and size in bytes."""

    entry: TensorEntry
    name: str
    qtype: GGMLQuantizationType
    nbytes: int


@dataclass
class ConvertResult:
    path: Path
    out_type: str
    n_params: int
    kind: str  # "chat", "embedding" or "rerank": what the daemon will serve the GGUF as
    warnings: list[str] = field(default_factory=list)


def _load_config(hf_dir: Path) -> dict:
    if not hf_dir.is_dir():
        raise ModelFileError(f"{hf_dir} is not a folder. Point convert at a Hugging Face checkpoint folder.")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ModelFileError(
            f"No config.json in {hf_dir}. Point convert at the folder of a Hugging Face checkpoint "
            "(config.json, *.safetensors, tokenizer.json)."
        )
    config = read_json(path)
    if not isinstance(config, dict):
        raise ModelFileError(f"{path} is not a JSON object; it is not a Hugging Face config.")
    return config


def read_config(hf_dir: Path) -> ModelConfig:
    """Parse config.json into the architecture's config; anything unsupported is refused with a clear message."""
    config = _load_config(hf_dir)
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    name = str(names[0])
    try:
        if name in convert_qwen.ARCHITECTURES:
            return convert_qwen.qwen_config(config, name)
        if name in convert_bert.ARCHITECTURES or name == "bert":
            return convert_bert.bert_config(config, "BertModel" if name == "bert" else name, hf_dir)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(
            f"{hf_dir / 'config.json'} lacks or garbles {exc}; it is not a complete {name} config."
        ) from exc
    known = "qwen" in name.lower() or "bert" in name.lower()
    raise ModelFileError(
        f"{name} {'is not supported' if known else 'is not a supported checkpoint'}; {SUPPORTED_TEXT}."
    )


def required_tensors(cfg: ModelConfig) -> set[str]:
    """The GGUF tensors llama.cpp needs for this architecture."""
    return cfg.required_tensors()


def output_type(entry: TensorEntry, name: str, wanted: GGMLQuantizationType) -> GGMLQuantizationType:
    """1-D tensors (norms, biases) and the tensors llama.cpp adds to F32 activations stay F32;
    Q8_0 needs rows of whole 32-blocks."""
    if len(entry.shape) <= 1 or name in F32_TENSORS or wanted == GGMLQuantizationType.F32:
        return GGMLQuantizationType.F32
    if wanted == GGMLQuantizationType.Q8_0 and entry.shape[-1] % 32:
        return GGMLQuantizationType.F16
    return wanted


def _nbytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    if qtype == GGMLQuantizationType.F32:
        return int(np.prod(shape)) * 4
    if qtype in (GGMLQuantizationType.F16, GGMLQuantizationType.BF16):
        return int(np.prod(shape)) * 2
    return int(np.prod(quant_shape_to_byte_shape(shape, qtype)))


def _plan_one(entry: TensorEntry, cfg: ModelConfig, wanted: GGMLQuantizationType) -> TensorPlan | None:
    try:
        name = cfg.gguf_name(entry.name)
    except KeyError:
        raise ModelFileError(
            f"Unexpected tensor {entry.name} in {entry.file.name}; this is not a plain {cfg.arch_name} "
            f"checkpoint ({SUPPORTED_TEXT})."
        ) from None
    if name is None:
        return None
    if not entry.is_float:
        raise ModelFileError(
            f"Tensor {entry.name} in {entry.file.name} has dtype {entry.dtype}; only float checkpoints "
            "(F32, F16, BF16) can be converted. Use the original, unquantized checkpoint."
        )
    qtype = output_type(entry, name, wanted)
    return TensorPlan(entry, name, qtype, _nbytes(entry.shape, qtype))


def plan_tensors(ckpt: Checkpoint, cfg: ModelConfig, wanted: GGMLQuantizationType) -> list[TensorPlan]:
    """Map every checkpoint tensor to its GGUF name and type (no data is read); refuse unknown or missing ones."""
    plans = [p for p in (_plan_one(entry, cfg, wanted) for entry in ckpt) if p is not None]
    missing = sorted(cfg.required_tensors() - {p.name for p in plans})
    if missing:
        raise ModelFileError(
            f"The checkpoint lacks {len(missing)} tensor(s) llama.cpp needs (e.g. {', '.join(missing[:3])}). "
            "Download the complete checkpoint."
        )
    embd = next(p for p in plans if p.name == "token_embd.weight").entry.shape
    if tuple(embd) != (cfg.vocab_size, cfg.hidden_size):
        raise ModelFileError(
            f"The embedding is {list(embd)} but config.json says {cfg.vocab_size} x {cfg.hidden_size}; "
            "the weights and config.json do not belong together."
        )
    return plans


def encode_tensor(ckpt: Checkpoint, plan: TensorPlan) -> np.ndarray:
    """The tensor's bytes in its GGUF type, read and converted a slice of rows at a time."""
    entry = plan.entry
    cols = entry.shape[-1] if entry.shape else 1
    n_rows = entry.n_elements // cols
    out = np.empty((n_rows, _nbytes((cols,), plan.qtype)), dtype=np.uint8)
    step = max(1, CHUNK_BYTES // (4 * cols))
    for start in range(0, n_rows, step):
        count = min(step, n_rows - start)
        block = ckpt.read_rows(entry, start, count).astype(np.float32, copy=False)
        out[start : start + count] = quantize(block, plan.qtype).view(np.uint8).reshape(count, -1)
    if plan.qtype == GGMLQuantizationType.F32:
        return out.view(np.float32)
    return out.view(np.float16) if plan.qtype == GGMLQuantizationType.F16 else out


def build_writer(
    name: str, cfg: ModelConfig, vocab: Vocab, plans: list[TensorPlan], ftype: int
) -> GGUFWriter:
    """A writer holding all metadata and tensor infos; tensor data follows with write_tensor_data."""
    writer = GGUFWriter(None, cfg.arch_name)
    for plan in plans:
        writer.add_tensor_info(
            plan.name, plan.entry.shape, np.dtype(np.float32), plan.nbytes, raw_dtype=plan.qtype
        )
    writer.add_type("model")
    writer.add_name(name)
    writer.add_size_label(size_label(*writer.get_total_parameter_count()))
    cfg.add_hyperparameters(writer)
    writer.add_file_type(ftype)
    writer.add_quantization_version(GGML_QUANT_VERSION)
    vocab.add_to(writer)
    return writer


def write_gguf(
    hf_dir: Path, target: Path, out_type: str, progress: ProgressFn | None = None
) -> ConvertResult:
    """Write the GGUF to `target` (no temp naming here): metadata, tensor table, then tensor by tensor."""
    ftype, wanted = DIRECT_TYPES[out_type]
    cfg = read_config(hf_dir)
    vocab = cfg.load_vocab(hf_dir)
    ckpt = Checkpoint(hf_dir)
    plans = plan_tensors(ckpt, cfg, wanted)
    total = sum(p.nbytes for p in plans)
    ensure_free_space(
        target.parent,
        total + vocab.metadata_bytes(),
        f"converting {hf_dir.name} to {out_type}",
        hint="Free up space or choose an --out on another disk.",
    )
    writer = build_writer(hf_dir.name, cfg, vocab, plans, ftype)
    n_params = writer.get_total_parameter_count()[0]
    _write_all(writer, ckpt, plans, target, progress)
    return ConvertResult(target, out_type, n_params, cfg.kind, vocab.warnings)


def _write_all(
    writer: GGUFWriter, ckpt: Checkpoint, plans: list[TensorPlan], target: Path, progress: ProgressFn | None
) -> None:
    """Header, metadata and tensor table first, then each tensor as soon as it is encoded."""
    total = sum(p.nbytes for p in plans)
    try:
        writer.write_header_to_file(path=target)
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        done = 0
        for plan in plans:
            if progress:
                progress(done, total, plan.name)
            writer.write_tensor_data(encode_tensor(ckpt, plan))
            done += plan.nbytes
        if progress:
            progress(done, total, "done")
    finally:
        writer.close()


def convert_checkpoint(
    hf_dir: Path,
    out: Path,
    out_type: str = "f16",
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    quantize_progress: ProgressFn | None = None,
    verbose: bool = False,
) -> ConvertResult:
    """Convert `hf_dir` to `out` (written as out.part, renamed when complete); k-/4-bit types via llama.cpp."""
    hf_dir, out = Path(hf_dir), Path(out)
    if out_type in DIRECT_TYPES:
        with atomic_output(out, force=force) as part:
            result = write_gguf(hf_dir, part, out_type, progress)
        result.path = out
        return result
    if out_type not in QUANT_TYPE_NAMES:
        raise ModelFileError(f"Unknown type {out_type!r}; choose one of {', '.join(CONVERT_TYPES)}.")
    from .quantize import load_llama_cpp, quantize_gguf

    # Fail on bad input, an existing output or a missing quantizer before the long f16 pass, not after it.
    read_config(hf_dir)
    refuse_existing(out, force=force)
    load_llama_cpp()
    f16 = part_path(out.with_name(f".{out.stem}.f16.gguf"))
    try:
        result = write_gguf(hf_dir, f16, "f16", progress)
        quantize_gguf(f16, out, out_type, force=force, progress=quantize_progress, verbose=verbose)
    except OSError as exc:
        if not is_disk_full(exc, f16.parent):  # checked before the finally deletes f16
            raise
        raise NotEnoughSpace(
            f"The disk filled up while converting {hf_dir.name} (its temporary f16 file): it was deleted and "
            f"{out.name} was not written. Free up space or choose an --out on another disk, then try again."
        ) from exc
    finally:
        f16.unlink(missing_ok=True)
    result.path, result.out_type = out, out_type
    return result
