"""Tiny random Hugging Face Qwen checkpoints (Qwen2 / Qwen3) with a real byte-level BPE tokenizer, for tests."""

from __future__ import annotations

import json
from pathlib import Path

# Qwen2's pre-tokenizer split (tokenizer.json of every Qwen2/2.5/3 checkpoint).
QWEN_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
USER_TOKENS = ["<tool_call>", "</tool_call>"]  # Qwen marks these added tokens as not special

# Qwen2.5-Instruct's chat template, shortened to the parts without tools.
QWEN_CHAT_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog. It's 2024 and we're testing Qwen's tokenizer!",
    "Hello, world! How are you today? I'm fine, thanks; let's write some code: print('hi')",
    "def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(i * 2)\n",
    "Large language models run on laptops with llama.cpp and GGUF files.",
    "今天天气很好，我们去公园散步吧。",
    "人工智能正在改变世界，大型语言模型可以在笔记本电脑上运行。",
    "你好，世界！我是通义千问，由阿里云开发的语言模型。",
    "中文和English混合的文本也需要正确地分词。模型、文件、转换、量化。",
    "北京是中国的首都，上海是一个国际化的大都市。",
]

# Hidden sizes are multiples of 256 so llama.cpp's k-quants apply without fallbacks.
TINY = {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 4}


def train_tokenizer(vocab_size: int = 600):
    """A byte-level BPE with Qwen's pre-tokenizer, trained on English and Chinese text, specials at the end."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in USER_TOKENS])
    return tok


def save_tokenizer(folder: Path, *, instruct: bool = True) -> dict[str, int]:
    """Write tokenizer.json and tokenizer_config.json the way Qwen ships them; returns the special ids."""
    tok = train_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS + USER_TOKENS}
    decoder = {
        str(ids[t]): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": t in SPECIAL_TOKENS,
        }
        for t in SPECIAL_TOKENS + USER_TOKENS
    }
    config = {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": decoder,
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "bos_token": None,
        "chat_template": QWEN_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>" if instruct else "<|endoftext|>",
        "errors": "replace",
        "model_max_length": 32768,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    return {"vocab": tok.get_vocab_size(with_added_tokens=True), **ids}


def randomize(model, seed: int) -> None:
    """Give every parameter (biases and norm weights too) distinct random values, so a wrong mapping shows."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                param.copy_(0.05 * noise)
            else:
                param.copy_(0.05 * noise)


def build_checkpoint(
    folder: Path,
    arch: str = "qwen2",
    *,
    tied: bool = False,
    dtype: str = "float32",
    seed: int = 0,
    vocab_pad: int = 24,
    sizes: dict | None = None,
) -> Path:
    """Save a random Qwen2/Qwen3 causal LM (safetensors) with a trained tokenizer into `folder`."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    ids = save_tokenizer(folder)
    common = dict(
        **(sizes or TINY),
        num_key_value_heads=2,
        vocab_size=ids["vocab"] + vocab_pad,  # Qwen pads the embedding beyond the tokenizer
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tied,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    torch.manual_seed(seed)
    if arch == "qwen2":
        config = Qwen2Config(**common, rope_theta=1000000.0)
        model = Qwen2ForCausalLM(config)
    elif arch == "qwen3":
        # Qwen3 decouples head_dim from hidden_size / heads (0.6B: 1024 / 16 heads, head_dim 128).
        config = Qwen3Config(**common, head_dim=128, rope_theta=1000000.0)
        model = Qwen3ForCausalLM(config)
    else:
        raise ValueError(arch)
    randomize(model, seed)
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def write_fake_checkpoint(
    folder: Path, *, hidden: int, ffn: int, layers: int, vocab: int, shards: int = 2
) -> int:
    """A Qwen2 checkpoint of random f32 numpy tensors in `shards` files (no torch); returns its weight bytes."""
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    ids = save_tokenizer(folder)
    heads, kv = hidden // 64, max(1, hidden // 256)
    config = {
        "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": vocab,
        "hidden_size": hidden, "intermediate_size": ffn, "num_hidden_layers": layers,
        "num_attention_heads": heads, "num_key_value_heads": kv, "max_position_embeddings": 4096,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": False,
        "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
    }  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    rng = np.random.default_rng(0)
    shapes = {
        "model.embed_tokens.weight": (vocab, hidden),
        "model.norm.weight": (hidden,),
        "lm_head.weight": (vocab, hidden),
    }
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (hidden,), p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.q_proj.bias": (hidden,),
            p + "self_attn.k_proj.weight": (kv * 64, hidden), p + "self_attn.k_proj.bias": (kv * 64,),
            p + "self_attn.v_proj.weight": (kv * 64, hidden), p + "self_attn.v_proj.bias": (kv * 64,),
            p + "self_attn.o_proj.weight": (hidden, hidden), p + "mlp.gate_proj.weight": (ffn, hidden),
            p + "mlp.up_proj.weight": (ffn, hidden), p + "mlp.down_proj.weight": (hidden, ffn),
        }  # fmt: skip
    names = list(shapes)
    weight_map, total = {}, 0
    for s in range(shards):
        part = names[s::shards]
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {n: rng.standard_normal(shapes[n], dtype=np.float32) * 0.02 for n in part}
        save_file(tensors, str(folder / file), metadata={"format": "pt"})
        total += sum(t.nbytes for t in tensors.values())
        weight_map |= dict.fromkeys(part, file)
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    return total
