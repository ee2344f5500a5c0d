"""Random-weight Qwen2/Qwen3 GGUFs with the real tensor layout, tokenizer kind and chat template.

llama.cpp loads and runs them like real Qwen models (the text is noise), so tests and benchmarks get
Qwen-shaped files without a model hub. Weights are quantized with gguf's numpy quantizer.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType, PoolingType, TokenType
from gguf.quants import quantize
from gguf.utility import model_weight_count_rounded_notation

# The Qwen2.5-Instruct chat template (ChatML with tools), verbatim from Qwen's tokenizer_config.json.
QWEN25_CHAT_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {%- for tool in tools %}
        {{- "\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\n<tool_call>\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\n<tool_response>\n' }}
        {{- message.content }}
        {{- '\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"""


@dataclass(frozen=True)
class Shape:
    """Hyper-parameters of one model size."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    context: int
    size_label: str  # "" = computed from the parameter count


SHAPES: dict[str, Shape] = {
    # A few MB: fast enough for every unit test.
    "tiny": Shape(hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, ffn=128, vocab=2048, context=4096,
                  size_label=""),
    # The real Qwen2.5-0.5B-Instruct and Qwen3-0.6B layouts (tied embeddings), for benchmarks.
    "qwen2.5-0.5b": Shape(hidden=896, layers=24, heads=14, kv_heads=2, head_dim=64, ffn=4864, vocab=151936,
                          context=32768, size_label="0.5B"),
    "qwen3-0.6b": Shape(hidden=1024, layers=28, heads=16, kv_heads=8, head_dim=128, ffn=3072, vocab=151936,
                        context=40960, size_label="0.6B"),
}  # fmt: skip

# file_type name -> (type of 2-D weights, general.file_type). K-quants (Q4_K_M…) are missing because
# gguf's numpy code can only dequantize them; produce those with llama.cpp's quantizer.
FILE_TYPES: dict[str, tuple[GGMLQuantizationType, LlamaFileType]] = {
    "F32": (GGMLQuantizationType.F32, LlamaFileType.ALL_F32),
    "F16": (GGMLQuantizationType.F16, LlamaFileType.MOSTLY_F16),
    "BF16": (GGMLQuantizationType.BF16, LlamaFileType.MOSTLY_BF16),
    "Q8_0": (GGMLQuantizationType.Q8_0, LlamaFileType.MOSTLY_Q8_0),
    "Q5_1": (GGMLQuantizationType.Q5_1, LlamaFileType.MOSTLY_Q5_1),
    "Q5_0": (GGMLQuantizationType.Q5_0, LlamaFileType.MOSTLY_Q5_0),
    "Q4_1": (GGMLQuantizationType.Q4_1, LlamaFileType.MOSTLY_Q4_1),
    "Q4_0": (GGMLQuantizationType.Q4_0, LlamaFileType.MOSTLY_Q4_0),
}

CONTROL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Qwen's added-but-not-special tokens: atomic in the tokenizer, printed as text (tool-call parsing).
USER_TOKENS = {
    "qwen2": ["<tool_call>", "</tool_call>"],
    "qwen3": ["<tool_call>", "</tool_call>", "<think>", "</think>"],
}
_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "you",
    "that",
    "it",
    "for",
    "are",
    "with",
    "this",
    "be",
    "on",
    "not",
    "have",
    "hello",
    "world",
    "user",
    "assistant",
    "system",
    "what",
    "how",
    "why",
    "who",
    "can",
    "do",
    "your",
    "me",
    "my",
    "we",
    "they",
    "tool",
    "call",
    "name",
    "arguments",
    "weather",
    "time",
]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte-to-unicode map: each byte as a printable character (space is 'Ġ')."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


def byte_alphabet() -> list[str]:
    """The 256 byte characters in GPT-2/Qwen token-id order (token 0 is '!')."""
    return list(byte_to_unicode().values())


def build_vocab(arch: str, size: int) -> tuple[list[str], list[int], list[str]]:
    """Byte-level BPE vocab: bytes, merged words, filler pairs, then Qwen's special tokens at the end."""
    alphabet = byte_alphabet()
    space = byte_to_unicode()[ord(" ")]
    tokens, merges, seen = list(alphabet), [], set(alphabet)
    for word in _WORDS:
        for text in (word, space + word):
            current = text[0]
            for ch in text[1:]:
                merged = current + ch
                if merged not in seen:
                    merges.append(f"{current} {ch}")
                    tokens.append(merged)
                    seen.add(merged)
                current = merged
    specials = CONTROL_TOKENS + USER_TOKENS[arch]
    # Filler tokens use only alphabet characters, so llama.cpp can always detokenize what it samples.
    fill = ("".join(t) for n in (2, 3) for t in itertools.product(alphabet, repeat=n))
    fill = (t for t in fill if t not in seen)
    while len(tokens) < size - len(specials):
        tokens.append(next(fill))
    types = [TokenType.NORMAL] * len(tokens)
    tokens += specials
    types += [TokenType.CONTROL] * len(CONTROL_TOKENS) + [TokenType.USER_DEFINED] * len(USER_TOKENS[arch])
    return tokens, [int(t) for t in types], merges


def _tensor_specs(arch: str, s: Shape) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor, in llama.cpp's naming; embeddings are tied (no output.weight)."""
    q, kv = s.heads * s.head_dim, s.kv_heads * s.head_dim
    yield "token_embd.weight", (s.vocab, s.hidden)
    for i in range(s.layers):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (s.hidden,)
        yield b + "attn_q.weight", (q, s.hidden)
        yield b + "attn_k.weight", (kv, s.hidden)
        yield b + "attn_v.weight", (kv, s.hidden)
        if arch == "qwen2":
            yield b + "attn_q.bias", (q,)
            yield b + "attn_k.bias", (kv,)
            yield b + "attn_v.bias", (kv,)
        else:
            yield b + "attn_q_norm.weight", (s.head_dim,)
            yield b + "attn_k_norm.weight", (s.head_dim,)
        yield b + "attn_output.weight", (s.hidden, q)
        yield b + "ffn_norm.weight", (s.hidden,)
        yield b + "ffn_gate.weight", (s.ffn, s.hidden)
        yield b + "ffn_up.weight", (s.ffn, s.hidden)
        yield b + "ffn_down.weight", (s.hidden, s.ffn)
    yield "output_norm.weight", (s.hidden,)


def _nbytes(shape: tuple[int, ...], qtype: GGMLQuantizationType) -> int:
    block, type_size = GGML_QUANT_SIZES[qtype]
    return int(np.prod(shape)) // block * type_size


def _tensor_data(
    name: str, shape: tuple[int, ...], qtype: GGMLQuantizationType, rng: np.random.Generator
) -> np.ndarray:
    if len(shape) == 1:  # norms are ones (a sane forward pass), biases small noise; always F32
        return np.ones(shape, np.float32) if "norm" in name else rng.normal(0, 0.02, shape).astype(np.float32)
    data = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
    if qtype == GGMLQuantizationType.F32:
        return data
    if qtype == GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return quantize(data, qtype)


def _add_metadata(
    w: GGUFWriter, arch: str, s: Shape, shape_name: str, file_type: str, pooling: PoolingType | None = None
) -> None:
    w.add_type("model")
    w.add_name(f"Synthetic {arch} {shape_name}" + (" Embedding" if pooling is not None else ""))
    n_params = sum(int(np.prod(shp)) for _, shp in _tensor_specs(arch, s))
    w.add_size_label(s.size_label or model_weight_count_rounded_notation(n_params))
    w.add_file_type(int(FILE_TYPES[file_type][1]))
    w.add_quantization_version(2)
    w.add_context_length(s.context)
    w.add_embedding_length(s.hidden)
    w.add_block_count(s.layers)
    w.add_feed_forward_length(s.ffn)
    w.add_head_count(s.heads)
    w.add_head_count_kv(s.kv_heads)
    if arch == "qwen3":
        w.add_key_length(s.head_dim)
        w.add_value_length(s.head_dim)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    if pooling is not None:  # how convert_hf_to_gguf marks Qwen3-Embedding (pooling = last)
        w.add_pooling_type(pooling)
    tokens, types, merges = build_vocab(arch, s.vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_eos_token_id(tokens.index("<|im_end|>"))
    w.add_pad_token_id(tokens.index("<|endoftext|>"))
    w.add_bos_token_id(tokens.index("<|endoftext|>"))
    w.add_add_bos_token(False)
    w.add_chat_template(QWEN25_CHAT_TEMPLATE)


def write_qwen_gguf(
    path: str | os.PathLike[str],
    arch: str = "qwen2",
    shape: str = "tiny",
    file_type: str = "Q8_0",
    seed: int = 0,
    split_max_tensors: int | None = None,
    pooling_type: str | None = None,
) -> Path:
    """Write a random-weight Qwen GGUF; returns the file (the first shard when split).

    `pooling_type` ("last", "mean", "cls") makes an embedding model laid out like Qwen3-Embedding:
    the same tensors as the chat model (tied embeddings, no output head) plus `<arch>.pooling_type`.

    Files appear atomically: they are written into a hidden temp folder beside `path`, then moved.
    Split files are named `<stem>-00001-of-0000N.gguf` like llama.cpp's gguf-split.
    """
    if arch not in USER_TOKENS:
        raise ValueError(f"arch must be one of {sorted(USER_TOKENS)}, not {arch!r}")
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {sorted(SHAPES)}, not {shape!r}")
    if file_type not in FILE_TYPES:
        raise ValueError(
            f"file_type {file_type!r} cannot be produced with gguf's numpy quantizer "
            f"(supported: {', '.join(FILE_TYPES)}); use llama.cpp's quantizer for K-quants."
        )
    pooling = None
    if pooling_type is not None:
        names = {p.name.lower(): p for p in PoolingType if p not in (PoolingType.NONE, PoolingType.RANK)}
        if pooling_type not in names:
            raise ValueError(f"pooling_type must be one of {sorted(names)}, not {pooling_type!r}")
        pooling = names[pooling_type]
    path, s = Path(path), SHAPES[shape]
    weight_type = FILE_TYPES[file_type][0]
    specs = [
        (n, sh, weight_type if len(sh) > 1 else GGMLQuantizationType.F32) for n, sh in _tensor_specs(arch, s)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".qwendesk-synthetic-", dir=path.parent))
    try:
        w = GGUFWriter(tmp / path.name, arch, split_max_tensors=split_max_tensors or 0)
        _add_metadata(w, arch, s, shape, file_type, pooling)
        for name, shp, qtype in specs:
            w.add_tensor_info(name, shp, np.dtype(np.float32), _nbytes(shp, qtype), raw_dtype=qtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        for i, (name, shp, qtype) in enumerate(specs):
            w.write_tensor_data(_tensor_data(name, shp, qtype, np.random.default_rng([seed, i])))
        w.close()
        written = sorted(tmp.iterdir())
        for f in written:
            os.replace(f, path.parent / f.name)
        return path.parent / written[0].name
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_minimal_gguf(
    path: str | os.PathLike[str],
    arch: str = "llama",
    *,
    general_type: str | None = "model",
    name: str | None = None,
    chat_template: str | None = None,
    file_type: LlamaFileType | None = None,
    context_length: int | None = 2048,
) -> Path:
    """A header-valid GGUF with one small tensor (not loadable as a model): for scanning tests,
    e.g. a fake vision projector (`arch="clip", general_type="mmproj"`) or an unknown architecture."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(path, arch)
    if general_type:
        w.add_type(general_type)
    if name:
        w.add_name(name)
    if file_type is not None:
        w.add_file_type(int(file_type))
    if context_length:
        w.add_context_length(context_length)
    if chat_template:
        w.add_chat_template(chat_template)
    w.add_tensor("weight", np.zeros((4, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
