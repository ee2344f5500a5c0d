"""The synthetic Qwen2-VL pair: llama.cpp's layout and keys, qwendesk pairs and registers it as a vision model,
and the expected-token arithmetic follows llama.cpp's resizing rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from gguf import GGUFReader
from gguf.constants import TokenType

from qwendesk.models.folder import scan
from qwendesk.models.gguf_info import read_gguf
from tests.fixtures.synthetic import SHAPES
from tests.fixtures.vision import (
    QWEN2VL_CHAT_TEMPLATE,
    VISION,
    VISION_TOKENS,
    image_tokens,
    resized_size,
    write_qwen2vl_pair,
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_qwen2vl_pair(tmp_path_factory.mktemp("vl"))


def _field(reader: GGUFReader, key: str):
    return reader.fields[key].contents()


def test_names_sizes_and_speed(pair: tuple[Path, Path]) -> None:
    model, mmproj = pair
    assert (
        model.name == "Qwen2-VL-Tiny-Instruct-Q8_0.gguf"
        and mmproj.name == "mmproj-Qwen2-VL-Tiny-Instruct-f16.gguf"
    )
    assert model.stat().st_size < 1_000_000 and mmproj.stat().st_size < 1_000_000
    assert not list(model.parent.glob(".qwendesk-synthetic-*"))  # written atomically, temp folder gone


def test_text_model_keys(pair: tuple[Path, Path]) -> None:
    r = GGUFReader(pair[0])
    assert _field(r, "general.architecture") == "qwen2vl"
    assert _field(r, "qwen2vl.rope.dimension_sections") == [2, 3, 3, 0]  # M-RoPE: sums to head_dim / 2
    assert _field(r, "tokenizer.chat_template") == QWEN2VL_CHAT_TEMPLATE
    tokens, types = _field(r, "tokenizer.ggml.tokens"), _field(r, "tokenizer.ggml.token_type")
    assert len(tokens) == SHAPES["tiny"].vocab
    for t in VISION_TOKENS:
        assert types[tokens.index(t)] == TokenType.CONTROL
    assert tokens[_field(r, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"


def test_projector_keys_and_tensors(pair: tuple[Path, Path]) -> None:
    r = GGUFReader(pair[1])
    assert _field(r, "general.architecture") == "clip" and _field(r, "general.type") == "mmproj"
    assert _field(r, "clip.projector_type") == "qwen2vl_merger" and _field(r, "clip.has_vision_encoder")
    assert _field(r, "clip.vision.projection_dim") == SHAPES["tiny"].hidden  # feeds the text model's n_embd
    assert _field(r, "clip.vision.patch_size") == 14 and _field(r, "clip.vision.spatial_merge_size") == 2
    tensors = {t.name: tuple(int(d) for d in t.shape) for t in r.tensors}
    assert tensors["v.patch_embd.weight"] == tensors["v.patch_embd.weight.1"] == (14, 14, 3, VISION.hidden)
    merged = VISION.hidden * 4
    assert tensors["mm.0.weight"] == (merged, merged) and tensors["mm.2.weight"] == (
        merged,
        SHAPES["tiny"].hidden,
    )
    assert {"v.blk.0.attn_q.bias", "v.blk.0.ln1.bias", "v.post_ln.weight", "v.blk.0.ffn_down.bias"} <= set(
        tensors
    )


def test_qwendesk_pairs_and_registers_it_as_a_vision_model(pair: tuple[Path, Path]) -> None:
    """The issue's item 1 up to registration: the folder scan pairs the mmproj, the family can see."""
    info = read_gguf(pair[1])
    assert info.is_projector
    models = scan([pair[0].parent])
    assert len(models) == 1
    (m,) = models.values()
    assert m.file == pair[0] and m.mmproj == pair[1] and m.error is None
    reg = m.registration
    assert reg is not None and reg.model_family == "qwen2-vl-instruct"
    assert "vision" in reg.abilities and reg.chat_template == ""  # llama.cpp renders the GGUF's template


def test_without_its_projector_it_is_a_text_model(tmp_path: Path) -> None:
    model, mmproj = write_qwen2vl_pair(tmp_path)
    mmproj.unlink()
    (m,) = scan([tmp_path]).values()
    assert m.mmproj is None and "vision" not in m.registration.abilities


@pytest.mark.parametrize(
    ("size", "limits", "resized", "tokens"),
    [
        # worked by hand from llama.cpp's calc_size_preserved_ratio (align 28, 8..4096 tokens)
        ((640, 480), {}, (644, 476), 23 * 17),  # sides rounded to the nearest multiple of 28
        ((64, 64), {}, (84, 84), 9),  # 2x2 = 4 tokens < 8: scaled up, ceil
        ((2000, 1500), {}, (1988, 1512), 71 * 54),
        ((4000, 3000), {}, (2044, 1540), 73 * 55),  # 143x107 tokens > 4096: scaled down, floor
        ((640, 480), {"max_tokens": 256}, (504, 364), 18 * 13),
        ((14, 14), {}, (84, 84), 9),
    ],
)
def test_expected_tokens_follow_llama_cpp(size, limits, resized, tokens) -> None:
    assert resized_size(*size, **limits) == resized
    assert image_tokens(*size, **limits) == tokens
