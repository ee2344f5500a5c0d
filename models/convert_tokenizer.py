"""Qwen's byte-level BPE tokenizer (tokenizer.json) as GGUF metadata, the way llama.cpp expects it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from gguf import GGUFWriter, SpecialVocab, TokenType

from .convert_output import read_json
from .errors import ModelFileError

log = logging.getLogger(__name__)

# The split regex of Qwen2/2.5/3 tokenizers; llama.cpp implements it as the "qwen2" pre-tokenizer.
QWEN2_PRE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
TOKENIZER_FILES_HINT = (
    "Download the checkpoint with its tokenizer files (tokenizer.json, tokenizer_config.json), "
    "or save them next to the weights with transformers' AutoTokenizer.save_pretrained."
)


@dataclass
class QwenVocab:
    """Token strings, types and merges, plus the special tokens and chat template, ready for a GGUF."""

    tokens: list[str]
    types: list[int]
    special: SpecialVocab
    warnings: list[str] = field(default_factory=list)

    @property
    def chat_template(self) -> str | None:
        template = self.special.chat_template
        return template if isinstance(template, str) else None

    def add_to(self, writer: GGUFWriter) -> None:
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("qwen2")
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        self.special.add_to_gguf(writer, quiet=True)

    def metadata_bytes(self) -> int:
        """A generous estimate of the space the vocabulary takes in the file."""
        text = sum(len(t.encode()) + 12 for t in self.tokens)
        merges = sum(len(m.encode()) + 8 for m in self.special.merges)
        return text + merges + 4 * len(self.types) + len(self.chat_template or "") + 4096


def looks_special(token: str) -> bool:
    """Added tokens like <|im_start|> are control tokens even when a checkpoint forgets to mark them."""
    return (token.startswith("<|") and token.endswith("|>")) or token in ("<pad>", "<mask>")


def _split_regexes(pre_tokenizer: dict | None) -> list[str]:
    """The Split regexes of a (possibly nested) pre-tokenizer."""
    if not pre_tokenizer:
        return []
    if pre_tokenizer.get("type") == "Sequence":
        return [r for p in pre_tokenizer.get("pretokenizers", []) for r in _split_regexes(p)]
    if pre_tokenizer.get("type") == "Split":
        return [pre_tokenizer.get("pattern", {}).get("Regex", "")]
    return []


def check_tokenizer(tokenizer: dict, path: Path) -> None:
    """Refuse tokenizers llama.cpp's "qwen2" pre-tokenizer would not reproduce exactly."""
    model = tokenizer.get("model", {})
    if model.get("type") != "BPE":
        raise ModelFileError(
            f"{path} holds a {model.get('type')} tokenizer; Qwen checkpoints use a byte-level BPE. "
            "Use the tokenizer files of the original Qwen model."
        )
    if _split_regexes(tokenizer.get("pre_tokenizer")) != [QWEN2_PRE_REGEX]:
        raise ModelFileError(
            f"The pre-tokenizer in {path} is not Qwen's, so llama.cpp would split text differently. "
            "Use the tokenizer files of the original Qwen model."
        )


def load_vocab(hf_dir: Path, vocab_size: int) -> QwenVocab:
    """Read tokenizer.json (+ tokenizer_config.json) and pad the vocabulary to the model's `vocab_size`."""
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelFileError(f"No tokenizer.json in {hf_dir}. {TOKENIZER_FILES_HINT}")
    tokenizer = read_json(path, TOKENIZER_FILES_HINT)
    check_tokenizer(tokenizer, path)
    by_id: dict[int, str] = {i: t for t, i in tokenizer["model"]["vocab"].items()}
    added = {a["id"]: a for a in tokenizer.get("added_tokens", [])}
    for token_id, info in added.items():
        by_id[token_id] = info["content"]
    if by_id and max(by_id) >= vocab_size:
        raise ModelFileError(
            f"The tokenizer has token id {max(by_id)} but the model's vocab_size is {vocab_size}; "
            "tokenizer and weights do not belong together."
        )
    tokens: list[str] = []
    types: list[int] = []
    for token_id in range(vocab_size):
        text = by_id.get(token_id)
        if text is None:  # Qwen pads the embedding matrix beyond the tokenizer; llama.cpp names these [PADn]
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
        elif token_id in added:
            special = added[token_id].get("special", False) or looks_special(text)
            # llama.cpp expects user-defined tokens pre-normalized: plain spaces, no SentencePiece marks.
            tokens.append(text if special else text.replace("\u2581", " "))
            types.append(TokenType.CONTROL if special else TokenType.USER_DEFINED)
        else:
            tokens.append(text)
            types.append(TokenType.NORMAL)
    special_vocab = SpecialVocab(hf_dir, load_merges=True, n_vocab=vocab_size)
    vocab = QwenVocab(tokens, types, special_vocab)
    if not special_vocab.merges:
        raise ModelFileError(f"{path} has no BPE merges. {TOKENIZER_FILES_HINT}")
    if vocab.chat_template is None:
        vocab.warnings.append(
            "No chat template in tokenizer_config.json or chat_template.jinja: the model converts, "
            "but chat needs a template (base models are meant for completion)."
        )
    if "eos" not in special_vocab.special_token_ids:
        vocab.warnings.append("No end-of-sequence token found in tokenizer_config.json or config.json.")
    return vocab
