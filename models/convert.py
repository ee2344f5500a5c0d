"""Convert a Hugging Face Qwen2 / Qwen2.5 / Qwen3 checkpoint into a GGUF, streaming one tensor at a time."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import (
    GGML_QUANT_VERSION,
    MODEL_ARCH,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFWriter,
    LlamaFileType,
    RopeScalingType,
    get_tensor_name_map,
)
from gguf.quants import quant_shape_to_byte_shape, quantize
from gguf.utility import size_label

from .convert_output import ProgressFn
from .convert_safetensors import Checkpoint, TensorEntry, to_float
from .convert_tokenizer import QwenVocab, load_vocab
from .errors import ModelFileError
from .files import atomic_output, ensure_free_space, part_path, refuse_existing

log = logging.getLogger(__name__)

ARCHITECTURES = {"Qwen2ForCausalLM": MODEL_ARCH.QWEN2, "Qwen3ForCausalLM": MODEL_ARCH.QWEN3}
SUPPORTED_TEXT = "qwendesk converts Qwen2, Qwen2.5 and Qwen3 (dense) checkpoints"
# Output types written directly here; the others go through llama.cpp's quantizer (see quantize.py).
DIRECT_TYPES = {
    "f32": (LlamaFileType.ALL_F32, GGMLQuantizationType.F32),
    "f16": (LlamaFileType.MOSTLY_F16, GGMLQuantizationType.F16),
    "bf16": (LlamaFileType.MOSTLY_BF16, GGMLQuantizationType.BF16),
    "q8_0": (LlamaFileType.MOSTLY_Q8_0, GGMLQuantizationType.Q8_0),
}
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)  # recomputed by llama.cpp
CHUNK_BYTES = 16 * 1024 * 1024  # rows are converted in slices of about this many float32 bytes


@dataclass(frozen=True)
class QwenConfig:
    """The hyperparameters of config.json that the GGUF needs."""

    arch: MODEL_ARCH
    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_size: int
    context_length: int
    rms_eps: float
    rope_theta: float
    head_dim: int | None
    tied: bool
    rope_scaling: dict | None

    @property
    def arch_name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]


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
    warnings: list[str] = field(default_factory=list)


def _rope(config: dict) -> tuple[float, dict | None]:
    """rope theta and scaling from transformers 4 (rope_theta/rope_scaling) or 5 (rope_parameters) configs."""
    params = config.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    scaling = config.get("rope_scaling") or None
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = params
    return theta, scaling


def read_config(hf_dir: Path) -> QwenConfig:
    """Parse config.json; anything that is not a dense Qwen2/Qwen3 causal LM is refused with a clear message."""
    if not hf_dir.is_dir():
        raise ModelFileError(f"{hf_dir} is not a folder. Point convert at a Hugging Face checkpoint folder.")
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ModelFileError(
            f"No config.json in {hf_dir}. Point convert at the folder of a Hugging Face checkpoint "
            "(config.json, *.safetensors, tokenizer.json)."
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Could not read {path} ({exc}). Download the checkpoint again.") from exc
    names = config.get("architectures") or [config.get("model_type", "unknown")]
    arch = ARCHITECTURES.get(names[0])
    if arch is None:
        kind = "is not supported" if "qwen" in names[0].lower() else "is not a Qwen checkpoint"
        raise ModelFileError(f"{names[0]} {kind}; {SUPPORTED_TEXT}.")
    theta, scaling = _rope(config)
    try:
        hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
        return QwenConfig(
            arch=arch,
            vocab_size=int(config["vocab_size"]),
            hidden_size=hidden,
            n_layers=int(config["num_hidden_layers"]),
            n_heads=heads,
            n_kv_heads=int(config.get("num_key_value_heads") or heads),
            ffn_size=int(config["intermediate_size"]),
            context_length=int(config.get("max_position_embeddings", 32768)),
            rms_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=theta,
            head_dim=int(config["head_dim"]) if config.get("head_dim") else None,
            tied=bool(config.get("tie_word_embeddings", False)),
            rope_scaling=scaling,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path} lacks or garbles {exc}; it is not a complete Qwen config.") from exc


def required_tensors(cfg: QwenConfig) -> set[str]:
    """The GGUF tensors llama.cpp needs for this architecture."""
    names = {"token_embd.weight", "output_norm.weight"} | (set() if cfg.tied else {"output.weight"})
    per_block = [
        "attn_norm",
        "attn_q",
        "attn_k",
        "attn_v",
        "attn_output",
        "ffn_norm",
        "ffn_gate",
        "ffn_up",
        "ffn_down",
    ]
    per_block += ["attn_q_norm", "attn_k_norm"] if cfg.arch == MODEL_ARCH.QWEN3 else []
    biases = ["attn_q", "attn_k", "attn_v"] if cfg.arch == MODEL_ARCH.QWEN2 else []
    for i in range(cfg.n_layers):
        names |= {f"blk.{i}.{t}.weight" for t in per_block} | {f"blk.{i}.{t}.bias" for t in biases}
    return names


def output_type(entry: TensorEntry, wanted: GGMLQuantizationType) -> GGMLQuantizationType:
    """1-D tensors (norms, biases) stay F32 as llama.cpp requires; Q8_0 needs rows of whole 32-blocks."""
    if len(entry.shape) <= 1 or wanted == GGMLQuantizationType.F32:
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


def plan_tensors(ckpt: Checkpoint, cfg: QwenConfig, wanted: GGMLQuantizationType) -> list[TensorPlan]:
    """Map every checkpoint tensor to its GGUF name and type (no data is read); refuse unknown or missing ones."""
    tmap = get_tensor_name_map(cfg.arch, cfg.n_layers)
    plans = []
    for entry in ckpt:
        if entry.name.endswith(SKIPPED_SUFFIXES) or (cfg.tied and entry.name == "lm_head.weight"):
            continue
        name = tmap.get_name(entry.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ModelFileError(
                f"Unexpected tensor {entry.name} in {entry.file.name}; this is not a plain {cfg.arch_name} "
                f"checkpoint ({SUPPORTED_TEXT})."
            )
        qtype = output_type(entry, wanted)
        plans.append(TensorPlan(entry, name, qtype, _nbytes(entry.shape, qtype)))
    missing = sorted(required_tensors(cfg) - {p.name for p in plans})
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
        block = to_float(ckpt.read_rows(entry, start, count), entry.dtype).astype(np.float32, copy=False)
        encoded = quantize(block, plan.qtype)
        out[start : start + count] = encoded.view(np.uint8).reshape(count, -1)
    if plan.qtype == GGMLQuantizationType.F32:
        return out.view(np.float32)
    return out.view(np.float16) if plan.qtype == GGMLQuantizationType.F16 else out


def add_hyperparameters(writer: GGUFWriter, cfg: QwenConfig) -> None:
    """The llm-level keys llama.cpp reads for qwen2 / qwen3."""
    writer.add_context_length(cfg.context_length)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.n_layers)
    writer.add_feed_forward_length(cfg.ffn_size)
    writer.add_head_count(cfg.n_heads)
    writer.add_head_count_kv(cfg.n_kv_heads)
    writer.add_rope_freq_base(cfg.rope_theta)
    writer.add_layer_norm_rms_eps(cfg.rms_eps)
    if cfg.head_dim is not None:
        writer.add_key_length(cfg.head_dim)
        writer.add_value_length(cfg.head_dim)
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type") or scaling.get("type")
    if kind in ("yarn", "linear") and scaling.get("factor"):
        writer.add_rope_scaling_type(RopeScalingType.YARN if kind == "yarn" else RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(scaling["factor"]))
        if kind == "yarn" and scaling.get("original_max_position_embeddings"):
            writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
    elif kind not in (None, "default"):
        log.warning("rope scaling %r is not carried over; long-context behaviour may differ", kind)


def build_writer(
    name: str, cfg: QwenConfig, vocab: QwenVocab, plans: list[TensorPlan], ftype: int
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
    add_hyperparameters(writer, cfg)
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
    vocab = load_vocab(hf_dir, cfg.vocab_size)
    with Checkpoint(hf_dir) as ckpt:
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
    return ConvertResult(target, out_type, n_params, vocab.warnings)


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
    from .quantize import QUANT_TYPES, load_llama_cpp, quantize_gguf

    if out_type not in QUANT_TYPES:
        raise ModelFileError(
            f"Unknown type {out_type!r}; choose one of {', '.join([*DIRECT_TYPES, *QUANT_TYPES])}."
        )
    # Fail on bad input, an existing output or a missing quantizer before the long f16 pass, not after it.
    read_config(hf_dir)
    refuse_existing(out, force=force)
    load_llama_cpp()
    f16 = part_path(out.with_name(f".{out.stem}.f16.gguf"))
    try:
        result = write_gguf(hf_dir, f16, "f16", progress)
        quantize_gguf(f16, out, out_type, force=force, progress=quantize_progress, verbose=verbose)
    finally:
        f16.unlink(missing_ok=True)
    result.path, result.out_type = out, out_type
    return result
