"""The synthetic Qwen writer: real layout and template, and the files load and generate in llama.cpp."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qwendesk.models.gguf_info import read_gguf
from qwendesk.models.synthetic import (
    QWEN25_CHAT_TEMPLATE,
    build_vocab,
    byte_alphabet,
    byte_to_unicode,
    write_qwen_gguf,
)


def _tensor_names(path: Path) -> dict[str, tuple[int, ...]]:
    from gguf import GGUFReader

    reader = GGUFReader(path)
    return {t.name: tuple(int(d) for d in t.shape) for t in reader.tensors}


def test_qwen2_layout(qwen2_gguf: Path) -> None:
    tensors = _tensor_names(qwen2_gguf)
    assert tensors["token_embd.weight"] == (64, 2048)  # ggml order: (hidden, vocab)
    for suffix in ("attn_q.bias", "attn_k.bias", "attn_v.bias", "ffn_gate.weight", "ffn_down.weight"):
        assert f"blk.1.{suffix}" in tensors
    assert tensors["blk.0.attn_k.weight"] == (64, 32)  # 2 KV heads x 16
    assert not any("q_norm" in n for n in tensors)


def test_qwen3_layout(qwen3_gguf: Path) -> None:
    tensors = _tensor_names(qwen3_gguf)
    assert tensors["blk.0.attn_q_norm.weight"] == (16,)
    assert "blk.0.attn_k_norm.weight" in tensors
    assert not any(n.endswith(".bias") for n in tensors)


def test_template_is_qwen25s(qwen2_gguf: Path) -> None:
    """The same text Xinference ships for qwen2.5-instruct (Qwen's own tokenizer_config template)."""
    import importlib.util

    root = Path(next(iter(importlib.util.find_spec("xinference").submodule_search_locations)))
    family = json.loads((root / "model/llm/models/qwen2.5-instruct.json").read_text())
    family = family[0] if isinstance(family, list) else family
    assert family["chat_template"] == QWEN25_CHAT_TEMPLATE
    assert read_gguf(qwen2_gguf).chat_template == QWEN25_CHAT_TEMPLATE


def test_vocab() -> None:
    alphabet = byte_alphabet()
    assert len(set(alphabet)) == 256 and alphabet[0] == "!"
    assert byte_to_unicode()[ord(" ")] == "Ġ" and byte_to_unicode()[ord("a")] == "a"
    assert "Ġhello" in build_vocab("qwen2", 2048)[0]
    tokens, types, merges = build_vocab("qwen2", 2048)
    assert len(tokens) == len(types) == 2048 == len(set(tokens))
    assert tokens[-5:] == ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]
    assert types[-5:] == [3, 3, 3, 4, 4]
    vocab = set(tokens)
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in (m.split(" ") for m in merges))
    # Every normal token is made of alphabet characters, so llama.cpp can always detokenize it.
    assert all(set(t) <= set(alphabet) for t, ty in zip(tokens, types, strict=True) if ty == 1)


def test_deterministic_and_options(tmp_path: Path) -> None:
    a = write_qwen_gguf(tmp_path / "a.gguf", seed=3, file_type="Q4_0")
    b = write_qwen_gguf(tmp_path / "b.gguf", seed=3, file_type="Q4_0")
    assert a.read_bytes() == b.read_bytes()
    assert read_gguf(write_qwen_gguf(tmp_path / "f.gguf", file_type="F16")).quantization == "F16"
    with pytest.raises(ValueError, match="Q4_K_M.*llama.cpp"):
        write_qwen_gguf(tmp_path / "k.gguf", file_type="Q4_K_M")
    assert not list(tmp_path.glob(".*"))  # the temp folder is gone
    assert not (tmp_path / "k.gguf").exists()


def _chat(server, messages: list[dict], **extra) -> dict:
    return server.handle_chat_completions({"messages": messages, "max_tokens": 8, "temperature": 0, **extra})


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_loads_and_generates_in_llama_cpp(arch: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Real llama.cpp (xllamacpp) loads the file, applies its ChatML template and generates tokens."""
    import xllamacpp

    path = request.getfixturevalue(f"{arch}_gguf")
    params = xllamacpp.CommonParams()
    params.model.path = str(path)
    params.n_ctx, params.n_parallel, params.use_jinja, params.warmup = 1024, 1, True, False
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    server = xllamacpp.Server(params)
    bare = server.handle_completions({"prompt": "hello", "max_tokens": 1})["usage"]["prompt_tokens"]
    reply = _chat(server, [{"role": "user", "content": "hello"}])
    assert reply["usage"]["completion_tokens"] == 8
    # ChatML wraps the message: default system prompt, <|im_start|>user … <|im_start|>assistant
    assert reply["usage"]["prompt_tokens"] > bare + 20
    tool = {
        "type": "function",
        "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
    }
    with_tools = _chat(server, [{"role": "user", "content": "hello"}], tools=[tool])
    assert (
        with_tools["usage"]["prompt_tokens"] > reply["usage"]["prompt_tokens"]
    )  # the template renders tools
    split = write_qwen_gguf(tmp_path / "split.gguf", arch=arch, split_max_tensors=10)
    params.model.path = str(split)
    del server
    reply = _chat(xllamacpp.Server(params), [{"role": "user", "content": "hi"}])
    assert reply["usage"]["completion_tokens"] == 8
