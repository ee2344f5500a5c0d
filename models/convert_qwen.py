"""Qwen2 / Qwen2.5 / Qwen3 (dense causal LM) checkpoints: their config.json, tensor names and GGUF keys."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, GGUFWriter, RopeScalingType, get_tensor_name_map

from .convert_tokenizer import QwenVocab, load_vocab

log = logging.getLogger(__name__)

ARCHITECTURES = {"Qwen2ForCausalLM": MODEL_ARCH.QWEN2, "Qwen3ForCausalLM": MODEL_ARCH.QWEN3}
SKIPPED_SUFFIXES = ("rotary_emb.inv_freq",)  # recomputed by llama.cpp
PER_BLOCK = ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up",
             "ffn_down")  # fmt: skip


@dataclass(frozen=True)
class QwenConfig:
    """The hyperparameters of a Qwen config.json that the GGUF needs."""

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

    @property
    def kind(self) -> str:
        return "chat"

    @cached_property
    def _names(self) -> Any:
        return get_tensor_name_map(self.arch, self.n_layers)

    def gguf_name(self, hf_name: str) -> str | None:
        """The GGUF tensor name; None for tensors llama.cpp does not read; KeyError for foreign ones."""
        if hf_name.endswith(SKIPPED_SUFFIXES) or (self.tied and hf_name == "lm_head.weight"):
            return None
        name = self._names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise KeyError(hf_name)
        return name

    def required_tensors(self) -> set[str]:
        """The GGUF tensors llama.cpp needs for this architecture."""
        names = {"token_embd.weight", "output_norm.weight"} | (set() if self.tied else {"output.weight"})
        per_block = [*PER_BLOCK, *(["attn_q_norm", "attn_k_norm"] if self.arch == MODEL_ARCH.QWEN3 else [])]
        biases = ["attn_q", "attn_k", "attn_v"] if self.arch == MODEL_ARCH.QWEN2 else []
        for i in range(self.n_layers):
            names |= {f"blk.{i}.{t}.weight" for t in per_block} | {f"blk.{i}.{t}.bias" for t in biases}
        return names

    def add_hyperparameters(self, writer: GGUFWriter) -> None:
        """The llm-level keys llama.cpp reads for qwen2 / qwen3."""
        writer.add_context_length(self.context_length)
        writer.add_embedding_length(self.hidden_size)
        writer.add_block_count(self.n_layers)
        writer.add_feed_forward_length(self.ffn_size)
        writer.add_head_count(self.n_heads)
        writer.add_head_count_kv(self.n_kv_heads)
        writer.add_rope_freq_base(self.rope_theta)
        writer.add_layer_norm_rms_eps(self.rms_eps)
        if self.head_dim is not None:
            writer.add_key_length(self.head_dim)
            writer.add_value_length(self.head_dim)
        scaling = self.rope_scaling or {}
        kind = scaling.get("rope_type") or scaling.get("type")
        if kind in ("yarn", "linear") and scaling.get("factor"):
            writer.add_rope_scaling_type(RopeScalingType.YARN if kind == "yarn" else RopeScalingType.LINEAR)
            writer.add_rope_scaling_factor(float(scaling["factor"]))
            if kind == "yarn" and scaling.get("original_max_position_embeddings"):
                writer.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
        elif kind not in (None, "default"):
            log.warning("rope scaling %r is not carried over; long-context behaviour may differ", kind)

    def load_vocab(self, hf_dir: Path) -> QwenVocab:
        return load_vocab(hf_dir, self.vocab_size)


def _rope(config: dict) -> tuple[float, dict | None]:
    """rope theta and scaling from transformers 4 (rope_theta/rope_scaling) or 5 (rope_parameters) configs."""
    params = config.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", config.get("rope_theta", 10000.0)))
    scaling = config.get("rope_scaling") or None
    if scaling is None and params.get("rope_type", "default") != "default":
        scaling = params
    return theta, scaling


def qwen_config(config: dict, architecture: str) -> QwenConfig:
    """A QwenConfig from a parsed config.json; KeyError/TypeError/ValueError when a field is missing or garbled."""
    theta, scaling = _rope(config)
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    return QwenConfig(
        arch=ARCHITECTURES[architecture],
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
