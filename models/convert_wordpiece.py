"""BERT's WordPiece tokenizer (tokenizer.json) as GGUF metadata, in the form llama.cpp's "bert" vocabulary expects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gguf import GGUFWriter, SpecialVocab, TokenType

from .convert_output import read_json
from .errors import ModelFileError

# llama.cpp's WordPiece matches "▁word" for a word start and "piece" for a continuation ("##piece" in HF).
PHANTOM_SPACE = "\u2581"
# Keys of llama.cpp's BertNormalizer options; gguf 0.19 has no constants or writer methods for them yet.
LOWERCASE_KEY = "tokenizer.ggml.normalizer.lowercase"
STRIP_ACCENTS_KEY = "tokenizer.ggml.normalizer.strip_accents"
SPECIAL_TYPES = ("bos", "eos", "unk", "sep", "pad", "mask")
TOKENIZER_FILES_HINT = (
    "Download the checkpoint with its tokenizer.json, or write one next to the weights with "
    "transformers' AutoTokenizer.from_pretrained(folder).save_pretrained(folder)."
)


@dataclass
class WordPieceVocab:
    """Token strings (phantom-space form), token types, normalizer options and special tokens."""

    tokens: list[str]
    types: list[int]
    special: SpecialVocab
    lowercase: bool
    strip_accents: bool
    warnings: list[str] = field(default_factory=list)

    def add_to(self, writer: GGUFWriter) -> None:
        writer.add_tokenizer_model("bert")
        writer.add_tokenizer_pre("default")  # llama.cpp reads pre-tokenizer names for BPE vocabularies only
        writer.add_token_list(self.tokens)
        writer.add_token_types(self.types)
        writer.add_bool(LOWERCASE_KEY, self.lowercase)
        writer.add_bool(STRIP_ACCENTS_KEY, self.strip_accents)
        self.special.add_to_gguf(writer, quiet=True)

    def metadata_bytes(self) -> int:
        """A generous estimate of the space the vocabulary takes in the file."""
        return sum(len(t.encode()) + 12 for t in self.tokens) + 4 * len(self.types) + 4096


def phantom(token: str, token_type: int) -> str:
    """HF WordPiece form -> llama.cpp form: '##ing' -> 'ing', 'hello' -> '▁hello'; control tokens stay."""
    if token_type == TokenType.CONTROL:
        return token
    return token[2:] if token.startswith("##") else PHANTOM_SPACE + token


def _normalizer_options(tokenizer: dict, path: Path) -> tuple[bool, bool]:
    """(lowercase, strip_accents) of a BertNormalizer; refuse normalizers llama.cpp would not reproduce."""
    normalizer = tokenizer.get("normalizer") or {}
    if normalizer.get("type") != "BertNormalizer":
        raise ModelFileError(
            f"{path} normalizes text with {normalizer.get('type') or 'nothing'}, not BERT's normalizer, so "
            "llama.cpp would tokenize differently. Use the tokenizer files of the original BERT model."
        )
    if normalizer.get("handle_chinese_chars") is False:
        raise ModelFileError(
            f"{path} keeps Chinese characters together, but llama.cpp's WordPiece always splits them."
        )
    lowercase = bool(normalizer.get("lowercase", True))
    strip = normalizer.get("strip_accents")
    return lowercase, lowercase if strip is None else bool(strip)  # HF: None means "as lowercase"


def check_tokenizer(tokenizer: dict, path: Path) -> None:
    """Refuse tokenizers that are not the plain BERT WordPiece llama.cpp implements."""
    model = tokenizer.get("model", {})
    if model.get("type") != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
        raise ModelFileError(
            f"{path} holds a {model.get('type')} tokenizer; BERT models use WordPiece with '##' pieces. "
            "Use the tokenizer files of the original BERT model."
        )
    if (tokenizer.get("pre_tokenizer") or {}).get("type") != "BertPreTokenizer":
        raise ModelFileError(
            f"The pre-tokenizer in {path} is not BERT's, so llama.cpp would split text differently. "
            "Use the tokenizer files of the original BERT model."
        )


def load_wordpiece(hf_dir: Path, vocab_size: int) -> WordPieceVocab:
    """Read tokenizer.json (+ special_tokens_map / tokenizer_config) for a vocabulary of `vocab_size` rows."""
    path = hf_dir / "tokenizer.json"
    if not path.is_file():
        raise ModelFileError(f"No tokenizer.json in {hf_dir}. {TOKENIZER_FILES_HINT}")
    tokenizer = read_json(path, TOKENIZER_FILES_HINT)
    check_tokenizer(tokenizer, path)
    lowercase, strip_accents = _normalizer_options(tokenizer, path)
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
        if text is None:
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
            continue
        kind = TokenType.NORMAL
        if token_id in added:
            kind = TokenType.CONTROL if added[token_id].get("special") else TokenType.USER_DEFINED
        tokens.append(text if kind == TokenType.USER_DEFINED else phantom(text, kind))
        types.append(kind)
    # llama.cpp has no separate CLS id: BERT's [CLS] is its BOS (which gguf finds in the post-processor).
    special = SpecialVocab(hf_dir, load_merges=False, special_token_types=SPECIAL_TYPES, n_vocab=vocab_size)
    missing = [
        name for kind, name in (("bos", "[CLS]"), ("sep", "[SEP]")) if kind not in special.special_token_ids
    ]
    if missing:
        raise ModelFileError(
            f"No {' and '.join(missing)} token in {hf_dir}'s tokenizer files; BERT inputs are [CLS] text [SEP]. "
            f"{TOKENIZER_FILES_HINT}"
        )
    return WordPieceVocab(tokens, types, special, lowercase, strip_accents)
