"""A random-weight audio projector (mmproj) for the tiny synthetic Qwen2 text model: a GGUF model that can hear.

The layout is llama.cpp's for Qwen2-Audio (projector type `qwen2a`, tools/mtmd/clip.cpp and
models/whisper-enc.cpp): a Whisper encoder (two conv1d layers over the mel spectrogram, position embeddings,
transformer blocks with LayerNorms, q/v biases and no k bias, a final LayerNorm) and one linear layer into the
text model's width. llama.cpp turns an `input_audio` part into a spectrogram and these embeddings exactly as for
the real model; the text it writes is noise. Dimensions are tiny, so it loads in well under a second.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGMLQuantizationType, GGUFType, VisionProjectorType

from tests.fixtures.synthetic import SHAPES, _nbytes

HIDDEN, FFN, HEADS, LAYERS = 32, 64, 2, 1  # FFN differs from HIDDEN: llama.cpp tells up from down by shape
MEL_BINS = 128  # Qwen2-Audio's (Whisper large-v3's) spectrogram
POSITIONS = 1500  # a 30 s window: 3000 frames, halved by the second conv


def _specs(text_hidden: int) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(name, numpy shape) of every tensor; ggml's shape is the reverse."""
    yield "a.conv1d.1.weight", (HIDDEN, MEL_BINS, 3)
    yield "a.conv1d.1.bias", (HIDDEN, 1)
    yield "a.conv1d.2.weight", (HIDDEN, HIDDEN, 3)
    yield "a.conv1d.2.bias", (HIDDEN, 1)
    yield "a.position_embd.weight", (POSITIONS, HIDDEN)
    for i in range(LAYERS):
        b = f"a.blk.{i}."
        for norm in ("ln1", "ln2"):
            yield b + f"{norm}.weight", (HIDDEN,)
            yield b + f"{norm}.bias", (HIDDEN,)
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            yield b + f"{proj}.weight", (HIDDEN, HIDDEN)
            if proj != "attn_k":  # Whisper's key projection has no bias (llama.cpp asserts it)
                yield b + f"{proj}.bias", (HIDDEN,)
        yield b + "ffn_up.weight", (FFN, HIDDEN)
        yield b + "ffn_up.bias", (FFN,)
        yield b + "ffn_down.weight", (HIDDEN, FFN)
        yield b + "ffn_down.bias", (HIDDEN,)
    yield "a.post_ln.weight", (HIDDEN,)
    yield "a.post_ln.bias", (HIDDEN,)
    yield "mm.a.fc.weight", (text_hidden, HIDDEN)
    yield "mm.a.fc.bias", (text_hidden,)


def _data(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if name.endswith(("ln1.weight", "ln2.weight", "post_ln.weight")):
        return np.ones(shape, np.float32)
    if name.endswith(".bias"):
        return np.zeros(shape, np.float32)
    # Matrices in F16 like a converted file; the position embeddings are added to F32 activations: F32.
    f16 = len(shape) > 1 and not name.startswith("a.position_embd")
    return (rng.standard_normal(shape) * 0.02).astype(np.float16 if f16 else np.float32)


def write_audio_mmproj(path: str | os.PathLike[str], seed: int = 0) -> Path:
    """A `qwen2a` audio projector whose output width is the tiny synthetic text model's n_embd."""
    path = Path(path)
    text_hidden = SHAPES["tiny"].hidden
    w = GGUFWriter(path, "clip")
    w.add_type(GGUFType.MMPROJ)
    w.add_name("Qwen2-Audio Tiny (synthetic) audio encoder")
    w.add_file_type(1)  # MOSTLY_F16
    w.add_clip_has_audio_encoder(True)
    w.add_clip_has_vision_encoder(False)
    w.add_clip_projector_type(VisionProjectorType.QWEN2A)
    w.add_audio_projection_dim(text_hidden)
    w.add_audio_embedding_length(HIDDEN)
    w.add_audio_feed_forward_length(FFN)
    w.add_audio_block_count(LAYERS)
    w.add_audio_head_count(HEADS)
    w.add_audio_attention_layernorm_eps(1e-5)
    w.add_audio_num_mel_bins(MEL_BINS)
    specs = list(_specs(text_hidden))
    rng = np.random.default_rng(seed)
    arrays = [_data(name, shape, rng) for name, shape in specs]
    for (name, shape), array in zip(specs, arrays, strict=True):
        qtype = GGMLQuantizationType.F16 if array.dtype == np.float16 else GGMLQuantizationType.F32
        w.add_tensor_info(name, shape, np.dtype(np.float32), _nbytes(shape, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for array in arrays:
        w.write_tensor_data(array)
    w.close()
    return path
