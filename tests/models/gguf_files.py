"""GGUF files for header-reading tests: a real-sized Qwen header, and crafted files that cost work to read."""

from __future__ import annotations

import itertools
import os
import struct
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGMLQuantizationType, GGUFValueType, LlamaFileType, TokenType

from tests.fixtures.synthetic import QWEN25_CHAT_TEMPLATE, SHAPES, _nbytes, _tensor_specs, byte_alphabet

QWEN_VOCAB = 151_936  # Qwen2.5 / Qwen3 (config.json vocab_size)
QWEN_MERGES = 151_387  # Qwen2.5's merges.txt


def qwen_like_vocab(size: int, merges: int, token_bytes: int) -> tuple[list[str], list[str]]:
    """`size` distinct tokens of about `token_bytes` UTF-8 bytes each, and `merges` distinct "a b" merges."""
    alphabet = byte_alphabet()  # GPT-2 byte characters: half of them take 2 bytes in UTF-8
    width = max(2, token_bytes * 2 // 3)
    tokens = ["".join(t) for t in itertools.islice(itertools.product(alphabet, repeat=width), size)]
    pairs = (f"{t[: width // 2]} {t[width // 2 :]}" for t in tokens)
    return tokens, list(itertools.islice(pairs, merges))


def write_qwen_header(
    path: Path, *, vocab: int = QWEN_VOCAB, merges: int = QWEN_MERGES, token_bytes: int = 8
) -> Path:
    """A Qwen2.5-0.5B-shaped GGUF: the real tensor table and a full-size BPE tokenizer (tokens, types,
    merges), with the tensor data left as a hole (a sparse file): only the header is real."""
    shape = SHAPES["qwen2.5-0.5b"]
    tokens, merge_list = qwen_like_vocab(vocab, merges, token_bytes)
    tokens[-3:] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    w = GGUFWriter(path, "qwen2")
    w.add_type("model")
    w.add_name("Qwen2.5 0.5B Instruct")
    w.add_size_label("0.5B")
    w.add_file_type(int(LlamaFileType.MOSTLY_Q8_0))
    w.add_quantization_version(2)
    w.add_context_length(shape.context)
    w.add_embedding_length(shape.hidden)
    w.add_block_count(shape.layers)
    w.add_feed_forward_length(shape.ffn)
    w.add_head_count(shape.heads)
    w.add_head_count_kv(shape.kv_heads)
    w.add_rope_freq_base(1_000_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types([int(TokenType.NORMAL)] * (vocab - 3) + [int(TokenType.CONTROL)] * 3)
    w.add_token_merges(merge_list)
    w.add_eos_token_id(vocab - 1)
    w.add_pad_token_id(vocab - 3)
    w.add_bos_token_id(vocab - 3)
    w.add_add_bos_token(False)
    w.add_chat_template(QWEN25_CHAT_TEMPLATE)
    data = 0
    for name, shp in _tensor_specs("qwen2", shape):
        qtype = GGMLQuantizationType.Q8_0 if len(shp) > 1 else GGMLQuantizationType.F32
        nbytes = _nbytes(shp, qtype)
        w.add_tensor_info(name, shp, np.dtype(np.float32), nbytes, raw_dtype=qtype)
        data += GGUFWriter.ggml_pad(nbytes, w.data_alignment)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    header = GGUFWriter.ggml_pad(path.stat().st_size, w.data_alignment)
    os.truncate(path, header + data)  # tensor data as a hole: reading the header is all that is tested
    return path


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


def _one_tensor() -> bytes:
    """The tensor table of a 32-element F32 tensor at offset 0."""
    return _gguf_string(b"w") + struct.pack("<IQIQ", 1, 32, int(GGMLQuantizationType.F32), 0)


def _finish(path: Path, head: bytes, body_parts, tensor_table: bytes) -> Path:
    """Write the fixed header, the KV section (streamed), the tensor table, padding and 128 bytes of data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(head)
        for part in body_parts:
            fh.write(part)
        fh.write(tensor_table)
        fh.write(b"\0" * (-fh.tell() % 32) + b"\0" * 128)
    return path


def _hex_keys(start: int, count: int, digits: int) -> np.ndarray:
    """`count` distinct ASCII hex keys of `digits` characters, as a (count, digits) uint8 array."""
    idx = np.arange(start, start + count, dtype=np.uint64)
    shifts = np.arange(digits - 1, -1, -1, dtype=np.uint64) * np.uint64(4)
    nibbles = (idx[:, None] >> shifts[None, :]) & np.uint64(15)
    return np.frombuffer(b"0123456789abcdef", np.uint8)[nibbles.astype(np.intp)]


def write_many_entries(path: Path, entries: int, *, digits: int = 6, batch: int = 1 << 20) -> Path:
    """A GGUF with `entries` one-byte uint8 metadata entries (keys '000000', '000001', ...): 19 bytes each,
    so 16.7 M entries make the 304 MiB file of issue #14, item 10."""
    head = struct.pack("<IIQQ", 0x46554747, 3, 1, entries)
    entry = np.dtype([("len", "<u8"), ("key", "u1", digits), ("type", "<u4"), ("val", "u1")])

    def body():
        for start in range(0, entries, batch):
            n = min(batch, entries - start)
            rec = np.zeros(n, entry)
            rec["len"], rec["key"] = digits, _hex_keys(start, n, digits)
            rec["type"], rec["val"] = int(GGUFValueType.UINT8), 1
            yield rec.tobytes()

    return _finish(path, head, body(), _one_tensor())


def write_many_strings(path: Path, strings: int) -> Path:
    """A GGUF whose one metadata entry is an array of `strings` one-byte strings (9 bytes each)."""
    head = struct.pack("<IIQQ", 0x46554747, 3, 1, 1)
    key = _gguf_string(b"tokenizer.ggml.tokens")
    array = struct.pack("<IIQ", int(GGUFValueType.ARRAY), int(GGUFValueType.STRING), strings)
    one = struct.pack("<Q", 1) + b"a"

    def body():
        yield key + array
        for start in range(0, strings, 1 << 20):
            yield one * min(1 << 20, strings - start)

    return _finish(path, head, body(), _one_tensor())


def write_many_tensors(path: Path, tensors: int) -> Path:
    """A GGUF with `tensors` 32-element F32 tensors (names 't0000000', ...), all sharing offset 0."""
    head = struct.pack("<IIQQ", 0x46554747, 3, tensors, 1)
    arch = _gguf_string(b"general.architecture") + struct.pack("<I", int(GGUFValueType.STRING))
    arch += _gguf_string(b"llama")

    def table():
        for start in range(0, tensors, 1 << 18):
            n = min(1 << 18, tensors - start)
            yield b"".join(
                _gguf_string(b"t%07d" % i) + struct.pack("<IQIQ", 1, 32, int(GGMLQuantizationType.F32), 0)
                for i in range(start, start + n)
            )

    return _finish(path, head, [arch, *table()], b"")


def write_near_limits(path: Path, *, entries: int, strings: int, tensors: int) -> Path:
    """The costliest header the limits admit: `entries` metadata entries in all (one-byte ones, the
    architecture, and a vocabulary of `strings` one-byte tokens) and `tensors` tiny tensors."""
    head = struct.pack("<IIQQ", 0x46554747, 3, tensors, entries)
    arch = _gguf_string(b"general.architecture") + struct.pack("<I", int(GGUFValueType.STRING))
    arch += _gguf_string(b"llama")
    vocab = _gguf_string(b"tokenizer.ggml.tokens")
    vocab += struct.pack("<IIQ", int(GGUFValueType.ARRAY), int(GGUFValueType.STRING), strings)
    vocab += (struct.pack("<Q", 1) + b"a") * strings
    small = np.dtype([("len", "<u8"), ("key", "u1", 6), ("type", "<u4"), ("val", "u1")])
    rec = np.zeros(entries - 2, small)
    rec["len"], rec["key"] = 6, _hex_keys(0, entries - 2, 6)
    rec["type"], rec["val"] = int(GGUFValueType.UINT8), 1
    table = b"".join(
        _gguf_string(b"t%07d" % i) + struct.pack("<IQIQ", 1, 32, int(GGMLQuantizationType.F32), 0)
        for i in range(tensors)
    )
    return _finish(path, head, [arch, vocab, rec.tobytes()], table)


def write_sized_gguf(path: Path, size: int, arch: str = "llama", *, sparse: bool = False) -> Path:
    """A valid GGUF of about `size` bytes: a minimal header and one F32 tensor of zeros (a hole when
    `sparse`: no disk space, and still `size` bytes to read and copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w = GGUFWriter(path, arch)
    w.add_type("model")
    w.add_context_length(2048)
    shape = (max(size // 4 // 256, 1), 256)
    if not sparse:
        w.add_tensor("weight", np.zeros(shape, np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path
    nbytes = shape[0] * shape[1] * 4
    w.add_tensor_info("weight", shape, np.dtype(np.float32), nbytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    os.truncate(path, GGUFWriter.ggml_pad(path.stat().st_size, w.data_alignment) + nbytes)
    return path
