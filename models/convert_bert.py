"""BERT-family encoders (embedding models, cross-encoder rerankers): config.json, sentence-transformers pooling,
tensor names and the GGUF keys llama.cpp's `bert` architecture reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from gguf import MODEL_ARCH, MODEL_ARCH_NAMES, GGUFWriter, PoolingType, get_tensor_name_map

from .convert_output import read_json
from .convert_wordpiece import WordPieceVocab, load_wordpiece
from .errors import ModelFileError

EMBEDDING_ARCHITECTURES = ("BertModel", "BertForMaskedLM")
RERANK_ARCHITECTURES = ("BertForSequenceClassification",)
ARCHITECTURES = (*EMBEDDING_ARCHITECTURES, *RERANK_ARCHITECTURES)
# llama.cpp's BERT graph uses GELU (tanh form); the erf form HF calls "gelu" differs by < 1e-3.
GELU_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast")
# Heads of pre-training and the pooler: llama.cpp pools token states itself (mean/cls) for embeddings.
UNUSED_PREFIXES = ("pooler.", "cls.predictions.", "cls.seq_relationship.")
# A cross-encoder scores tanh(pooler(CLS state)) with its classifier; llama.cpp's rank pooling runs the same
# two layers as `cls` (+ tanh) and `cls.output`.
RERANK_HEAD = {
    "pooler.dense.weight": "cls.weight",
    "pooler.dense.bias": "cls.bias",
    "classifier.weight": "cls.output.weight",
    "classifier.bias": "cls.output.bias",
}
SENTENCE_TRANSFORMERS_POOLING = {
    "pooling_mode_mean_tokens": PoolingType.MEAN,
    "pooling_mode_cls_token": PoolingType.CLS,
    "pooling_mode_lasttoken": PoolingType.LAST,
}
POOLING_MODES = {"mean": PoolingType.MEAN, "cls": PoolingType.CLS, "lasttoken": PoolingType.LAST}
PER_BLOCK = ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight", "attn_output_norm.weight",
             "attn_output_norm.bias", "ffn_up.weight", "ffn_down.weight", "layer_output_norm.weight",
             "layer_output_norm.bias")  # fmt: skip


@dataclass(frozen=True)
class BertConfig:
    """The hyperparameters of a BERT config.json (and sentence-transformers files) that the GGUF needs."""

    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    ffn_size: int
    context_length: int
    norm_eps: float
    type_vocab_size: int
    pooling: PoolingType | None  # None: the checkpoint does not say (llama.cpp and qwendesk then use mean)
    labels: tuple[str, ...] = ()  # classifier outputs of a cross-encoder (reranker)
    warnings: list[str] = field(default_factory=list, compare=False)

    arch = MODEL_ARCH.BERT

    @property
    def arch_name(self) -> str:
        return MODEL_ARCH_NAMES[self.arch]

    @property
    def rerank(self) -> bool:
        return self.pooling == PoolingType.RANK

    @property
    def kind(self) -> str:
        return "rerank" if self.rerank else "embedding"

    @cached_property
    def _names(self) -> Any:
        return get_tensor_name_map(self.arch, self.n_layers)

    def gguf_name(self, hf_name: str) -> str | None:
        """The GGUF tensor name; None for tensors llama.cpp does not read; KeyError for foreign ones."""
        name = hf_name.removeprefix("bert.")
        if name.endswith(".gamma"):  # LayerNorm names of checkpoints saved by old transformers
            name = name.removesuffix(".gamma") + ".weight"
        elif name.endswith(".beta"):
            name = name.removesuffix(".beta") + ".bias"
        if self.rerank and name in RERANK_HEAD:
            return RERANK_HEAD[name]
        if name == "embeddings.position_ids" or name.startswith(UNUSED_PREFIXES):
            return None
        gguf_name = self._names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None or gguf_name.startswith("cls"):
            raise KeyError(hf_name)
        return gguf_name

    def required_tensors(self) -> set[str]:
        """The GGUF tensors llama.cpp's bert architecture cannot load without."""
        names = {
            "token_embd.weight",
            "position_embd.weight",
            "token_embd_norm.weight",
            "token_embd_norm.bias",
        }
        names |= {"cls.output.weight"} if self.rerank else set()
        return names | {f"blk.{i}.{t}" for i in range(self.n_layers) for t in PER_BLOCK}

    def add_hyperparameters(self, writer: GGUFWriter) -> None:
        """The keys llama.cpp reads for `bert`: sizes, layer-norm epsilon, non-causal attention, pooling."""
        writer.add_context_length(self.context_length)
        writer.add_embedding_length(self.hidden_size)
        writer.add_block_count(self.n_layers)
        writer.add_feed_forward_length(self.ffn_size)
        writer.add_head_count(self.n_heads)
        writer.add_layer_norm_eps(self.norm_eps)
        writer.add_causal_attention(False)
        writer.add_token_type_count(self.type_vocab_size)
        if self.pooling is not None:
            writer.add_pooling_type(self.pooling)
        if self.labels:
            writer.add_classifier_output_labels(list(self.labels))

    def load_vocab(self, hf_dir: Path) -> WordPieceVocab:
        vocab = load_wordpiece(hf_dir, self.vocab_size)
        vocab.warnings.extend(self.warnings)
        return vocab


def sentence_transformers_pooling(hf_dir: Path) -> PoolingType | None:
    """The pooling of a sentence-transformers model (modules.json -> Pooling config), None when there is none.

    Refuses modules llama.cpp cannot run after pooling (Dense projections), which would change the vectors.
    """
    modules = read_json(hf_dir / "modules.json") if (hf_dir / "modules.json").is_file() else []
    kinds = {m.get("type", "").rsplit(".", 1)[-1]: m for m in modules if isinstance(m, dict)}
    unsupported = sorted(set(kinds) - {"Transformer", "Pooling", "Normalize"})
    if unsupported:
        raise ModelFileError(
            f"{hf_dir.name} is a sentence-transformers model with {', '.join(unsupported)} module(s) after "
            "pooling, which llama.cpp cannot run: its vectors would differ. Choose a model without them."
        )
    folder = kinds["Pooling"].get("path", "1_Pooling") if "Pooling" in kinds else "1_Pooling"
    path = hf_dir / folder / "config.json"
    if not path.is_file():
        return None
    config = read_json(path)
    for flag, pooling in SENTENCE_TRANSFORMERS_POOLING.items():
        if config.get(flag):
            return pooling
    if config.get("pooling_mode") in POOLING_MODES:
        return POOLING_MODES[config["pooling_mode"]]
    raise ModelFileError(
        f"{path} pools by {config.get('pooling_mode') or 'max or sqrt-length mean'}; llama.cpp pools by mean, "
        "CLS token or last token only."
    )


def _labels(config: dict) -> tuple[str, ...]:
    """Classifier output labels in id order (a single-score cross-encoder has one)."""
    id2label = config.get("id2label") or {"0": "LABEL_0"}
    return tuple(str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0])))


def bert_config(config: dict, architecture: str, hf_dir: Path) -> BertConfig:
    """A BertConfig from a parsed config.json; ModelFileError for variants llama.cpp's bert cannot run."""
    activation = config.get("hidden_act", "gelu")
    if activation not in GELU_ACTIVATIONS:
        raise ModelFileError(
            f"{hf_dir.name} uses the {activation} activation; llama.cpp's BERT runs GELU only."
        )
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ModelFileError(
            f"{hf_dir.name} uses {config['position_embedding_type']} position embeddings; llama.cpp's BERT "
            "supports absolute ones only."
        )
    rerank = architecture in RERANK_ARCHITECTURES
    labels = _labels(config) if rerank else ()
    if rerank and len(labels) != 1:
        raise ModelFileError(
            f"{hf_dir.name} classifies into {len(labels)} labels; a reranker has one relevance score."
        )
    pooling = PoolingType.RANK if rerank else sentence_transformers_pooling(hf_dir)
    warnings = []
    if pooling is None:
        warnings.append(
            "No sentence-transformers pooling config (1_Pooling/config.json): the GGUF states no pooling, so "
            "llama.cpp and qwendesk pool by mean. Check that this is how the model is meant to be used."
        )
    return BertConfig(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_size"]),
        n_layers=int(config["num_hidden_layers"]),
        n_heads=int(config["num_attention_heads"]),
        ffn_size=int(config["intermediate_size"]),
        context_length=int(config.get("max_position_embeddings", 512)),
        norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        type_vocab_size=int(config.get("type_vocab_size", 2)),
        pooling=pooling,
        labels=labels,
        warnings=warnings,
    )
