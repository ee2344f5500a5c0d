"""What to register a GGUF as in Xinference, so chat (and tools, vision) work without hand-written JSON.

Facts from Xinference 4.1.0 (`model/llm/llm_family.py:327-382`, `model/llm/models/*.json`,
`api/restful_api.py:4935-4955`), checked by tests/models/test_families.py against the installed JSON:

* `model_family` may be any string, except that the `tools` ability needs a built-in tool family and
  `vision` a built-in vision family; a vision family gets `vision` added even if we leave it out.
* Requests carrying `tools` are refused (400) unless `model_family` is in a tool-call parser family.
* A `chat_template` of `""` makes llama.cpp use the template inside the GGUF — the model's own, correct
  one. Omitting it would send the family's Jinja (or, for a non-built-in family, the family NAME itself)
  to llama.cpp instead, which silently breaks prompts. So we always send it explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ModelFileError
from .gguf_info import GGUFInfo

# Built-in families we register as, with their abilities in Xinference 4.1.0's catalog.
BUILTIN_FAMILIES: dict[str, frozenset[str]] = {
    "qwen2.5-instruct": frozenset({"chat", "tools"}),
    "qwen3": frozenset({"chat", "reasoning", "hybrid", "tools"}),
    "qwen2-vl-instruct": frozenset({"chat", "vision"}),
    "qwen2.5-vl-instruct": frozenset({"chat", "vision"}),
    "Qwen3-VL-Instruct": frozenset({"chat", "vision", "tools"}),
    "qwen3.5": frozenset({"chat", "vision", "tools", "reasoning", "hybrid"}),
    "llama-3.1-instruct": frozenset({"chat", "tools"}),
}
QWEN_ARCHITECTURES = frozenset(
    {"qwen", "qwen2", "qwen2moe", "qwen2vl", "qwen3", "qwen3moe", "qwen3next", "qwen3vl", "qwen3vlmoe",
     "qwen35", "qwen35moe"}
)  # fmt: skip
# Encoders/embedders: llama.cpp runs them, but there is nothing to chat with. They are bidirectional,
# so a file without a pooling type is pooled by the mean (sentence-transformers' default).
EMBEDDING_ARCHITECTURES = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert",
     "eurobert", "gemma-embedding", "gemma-embedding2", "llama-embed", "t5encoder"}
)  # fmt: skip
# Neither text generators nor text embedders (WavTokenizer is an audio decoder for TTS).
UNSERVABLE_ARCHITECTURES = frozenset({"wavtokenizer-dec"})
# Hub pipeline tags of embedding models, as convert_hf_to_gguf copies them into general.tags.
EMBEDDING_TAGS = frozenset({"sentence-similarity", "sentence-transformers", "feature-extraction"})
# llama.cpp's /rerank formats a decoder reranker's input (e.g. Qwen3-Reranker) with this prompt from the file.
RERANK_TEMPLATE_KEY = "tokenizer.chat_template.rerank"
# gguf.PoolingType values (llama.cpp's llama_pooling_type), kept as ints: launch kwargs need ints.
POOLING_NONE, POOLING_MEAN, POOLING_CLS, POOLING_LAST, POOLING_RANK = 0, 1, 2, 3, 4
DEFAULT_CONTEXT = 2048  # Xinference's own default when a file states none


@dataclass(frozen=True)
class Registration:
    """How one model is registered: family, template, abilities and trained context."""

    model_family: str
    chat_template: str | None  # "" = the GGUF's own; "chatml" = llama.cpp's built-in; None = no chat
    abilities: tuple[str, ...]
    context_length: int
    embedding: bool = False
    dimensions: int | None = None  # embedding models: length of one vector
    pooling_type: int | None = None  # embedding models and rerankers: how llama.cpp pools (POOLING_*)
    rerank: bool = False  # a reranker: scores (query, document) pairs, launched with POOLING_RANK

    @property
    def chat(self) -> bool:
        return "chat" in self.abilities

    @property
    def kind(self) -> str:
        """'embedding' (/v1/embeddings), 'rerank' (/v1/rerank) or 'chat' (chat and completions, incl.
        generate-only)."""
        return "rerank" if self.rerank else "embedding" if self.embedding else "chat"


def is_reranker(info: GGUFInfo) -> bool:
    """A reranker (cross-encoder scoring query/document pairs) rather than an embedder or a chat model.

    llama.cpp's converter marks Qwen3-Reranker (`qwen3`) with pooling type rank and the labels
    ["yes", "no"]. BERT / XLM-RoBERTa cross-encoders (bge-reranker-v2-m3: `bert`) get no pooling type, only
    `<arch>.classifier.output_labels` with their one score (converters since mid-2025); older files carry
    just the `cls.output` tensor, which GGUFInfo does not list, so for encoders the name is the last hint.
    """
    if info.pooling_type == POOLING_RANK:
        return True
    arch = info.architecture or ""
    if arch not in EMBEDDING_ARCHITECTURES:
        return False
    labels = info.metadata.get(f"{arch}.classifier.output_labels")
    if isinstance(labels, list) and len(labels) == 1:
        return True
    return "rerank" in f"{info.name or ''} {info.path.name}".lower()


def is_embedding(info: GGUFInfo) -> bool:
    """An embedding model: an encoder architecture, a pooling type in the file, or tagged as one.

    Qwen3-Embedding GGUFs are architecture `qwen3` (like the chat models) with `qwen3.pooling_type` =
    last; chat GGUFs carry no pooling type. Rerankers are not embedding models (see is_reranker).
    """
    if is_reranker(info):
        return False
    if (info.architecture or "") in EMBEDDING_ARCHITECTURES:
        return True
    if info.pooling_type not in (None, POOLING_NONE):
        return True
    return info.general_type in ("embedding", "embeddings") or bool(EMBEDDING_TAGS & set(info.tags))


def embedding_pooling(info: GGUFInfo) -> int:
    """The pooling llama.cpp must use: the file's own, else mean for encoders and last token for decoders.

    Xinference's llama.cpp embedder forces `last` unless told otherwise, which is wrong for BERT-style
    models, so the launch always states it.
    """
    if info.pooling_type in (POOLING_MEAN, POOLING_CLS, POOLING_LAST):
        return info.pooling_type
    return POOLING_MEAN if (info.architecture or "") in EMBEDDING_ARCHITECTURES else POOLING_LAST


def _family_and_vision(info: GGUFInfo, has_mmproj: bool) -> tuple[str, bool]:
    """The family by architecture; vision families only when a projector is paired (else text-only)."""
    arch, name = info.architecture or "", (info.name or info.path.name).lower()
    if arch == "qwen2vl" and has_mmproj:
        return ("qwen2.5-vl-instruct" if re.search(r"2\.5|2_5", name) else "qwen2-vl-instruct"), True
    if arch in ("qwen3vl", "qwen3vlmoe") and has_mmproj:
        return "Qwen3-VL-Instruct", True
    if arch in ("qwen35", "qwen35moe") and has_mmproj:
        return "qwen3.5", True
    if arch.startswith(("qwen3", "qwen35")):
        return "qwen3", False
    if arch in QWEN_ARCHITECTURES:
        return "qwen2.5-instruct", False
    if arch == "llama" and info.supports_tools:
        return "llama-3.1-instruct", False
    # Not a built-in name: with an explicit chat_template it can never become the template itself.
    return f"custom-{arch or 'unknown'}", False


def registration_for(info: GGUFInfo, *, has_mmproj: bool = False) -> Registration:
    """Registration for a validated GGUF (first shard); `has_mmproj` when a projector is paired."""
    if info.is_projector:
        raise ModelFileError(f"'{info.path.name}' is a vision projector (mmproj), not a model to register.")
    context = info.context_length or DEFAULT_CONTEXT
    arch = info.architecture or ""
    if arch in UNSERVABLE_ARCHITECTURES:
        raise ModelFileError(
            f"'{info.path.name}' is a '{arch}' model (not text chat or embeddings), which qwendesk cannot serve."
        )
    if is_reranker(info):
        return _rerank_registration(info, arch, context)
    if is_embedding(info):
        if not info.embedding_length:
            raise ModelFileError(
                f"'{info.path.name}' is an embedding model without '{arch}.embedding_length', so its vector "
                "size is unknown. Re-convert it with a current llama.cpp."
            )
        return Registration(
            f"custom-{arch or 'unknown'}-embedding", None, ("embed",), context, embedding=True,
            dimensions=info.embedding_length, pooling_type=embedding_pooling(info),
        )  # fmt: skip
    family, vision = _family_and_vision(info, has_mmproj)
    if info.chat_template:
        template: str | None = ""  # llama.cpp renders the file's own template: always the right one
    elif arch in QWEN_ARCHITECTURES:
        template = "chatml"  # Qwen speaks ChatML; llama.cpp has it built in
    else:
        template = None  # no known template: plain completion only, rather than a wrong prompt format
    if template is None:
        return Registration(family, None, ("generate",), context)
    abilities = ["chat"]
    builtin = BUILTIN_FAMILIES.get(family, frozenset())
    # The tool-call gate needs a built-in tool family; llama.cpp needs a template that renders tools.
    if "tools" in builtin and template == "" and info.supports_tools:
        abilities.append("tools")
    if vision and "vision" in builtin:
        abilities.append("vision")
    return Registration(family, template, tuple(abilities), context)


def _rerank_registration(info: GGUFInfo, arch: str, context: int) -> Registration:
    """Rerankers are launched with rank pooling; a decoder one also needs its rerank prompt in the file."""
    if arch not in EMBEDDING_ARCHITECTURES and not isinstance(info.metadata.get(RERANK_TEMPLATE_KEY), str):
        raise ModelFileError(
            f"'{info.path.name}' is a '{arch}' reranker without its rerank prompt ({RERANK_TEMPLATE_KEY}), so "
            "llama.cpp would score unformatted text. Use a GGUF made by llama.cpp's convert_hf_to_gguf.py."
        )
    return Registration(
        f"custom-{arch or 'unknown'}-rerank",
        None,
        ("rerank",),
        context,
        rerank=True,
        pooling_type=POOLING_RANK,
    )
