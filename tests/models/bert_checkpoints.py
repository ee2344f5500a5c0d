"""Tiny random BERT checkpoints (embedder or cross-encoder reranker) with a real WordPiece tokenizer, for tests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
TINY_BERT = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 128,
}


def copy_tokenizer(source: Path, folder: Path) -> None:
    """The WordPiece tokenizer files of a real checkpoint (e.g. all-MiniLM-L6-v2)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, folder / name)


def build_bert(folder: Path, tokenizer_from: Path, *, rerank: bool = False, seed: int = 0) -> Path:
    """Save a random BertModel (or BertForSequenceClassification with one label) with `tokenizer_from`'s
    tokenizer into `folder`; an embedder also gets a sentence-transformers mean-pooling config."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    from .hf_checkpoints import randomize

    copy_tokenizer(tokenizer_from, folder)
    vocab = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    config = BertConfig(vocab_size=len(vocab), type_vocab_size=2, num_labels=1, **TINY_BERT)
    torch.manual_seed(seed)
    model = BertForSequenceClassification(config) if rerank else BertModel(config, add_pooling_layer=True)
    randomize(model, seed)
    if rerank:
        sharpen(model)
    model.eval().save_pretrained(folder, safe_serialization=True)
    if not rerank:
        write_pooling(folder, "pooling_mode_mean_tokens")
    return folder


def write_pooling(folder: Path, flag: str, extra_modules: tuple[str, ...] = ()) -> None:
    """sentence-transformers' modules.json and 1_Pooling/config.json with `flag` set."""
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    modules += [
        {
            "idx": i + 2,
            "name": str(i + 2),
            "path": f"{i + 2}_{m}",
            "type": f"sentence_transformers.models.{m}",
        }
        for i, m in enumerate(extra_modules)
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = ("pooling_mode_cls_token", "pooling_mode_mean_tokens", "pooling_mode_max_tokens")
    config = {"word_embedding_dimension": TINY_BERT["hidden_size"], **{f: f == flag for f in flags}}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))


def sharpen(model) -> None:
    """Make a random cross-encoder's scores differ between documents: with small random weights every
    [CLS] state is nearly the same (scores within 1e-4); x8 on the encoder's and pooler's matrices and a larger classifier
    spread them by a few hundredths, so a test can tell a right head mapping from a wrong one."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.ndim == 2 and name.startswith(("bert.encoder.", "bert.pooler.")):
                param.mul_(8.0)
            elif name == "classifier.weight":
                param.mul_(20.0)
