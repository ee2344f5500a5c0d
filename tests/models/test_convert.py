"""`qwendesk convert`: tiny random Qwen2/Qwen3 checkpoints -> GGUF, checked against transformers and llama.cpp."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, TokenType

from qwendesk.models import files
from qwendesk.models.convert import convert_checkpoint, read_config, required_tensors
from qwendesk.models.convert_safetensors import to_float
from qwendesk.models.errors import ModelFileError, NotEnoughSpace, QwendeskError

from .hf_checkpoints import SPECIAL_TOKENS, USER_TOKENS, build_checkpoint

TEXTS = [
    "Hello world! 你好，世界！",
    "中文和English混合的文本也需要正确地分词。It's 2024: models run on laptops 😀.",
    "def add(a, b):\n    return a + b  # 加法\n\n\n   spaces   and\ttabs",
    "<|im_start|>user\n今天天气怎么样？<|im_end|>\n<|im_start|>assistant\n<tool_call>{}</tool_call><|im_end|>",
    "数字123456789和标点：“引号”、《书名》……",
]
PROMPT = "<|im_start|>user\nHello, 今天天气很好。Let's write code.<|im_end|>\n<|im_start|>assistant\n"


# ---- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """qwen2: untied embeddings, f32 weights, q/k/v biases; qwen3: tied, bf16 weights, q/k norms, head_dim 128."""
    root = tmp_path_factory.mktemp("hf")
    return {
        "qwen2": build_checkpoint(root / "Qwen2.5-tiny", "qwen2", tied=False, dtype="float32", seed=1),
        "qwen3": build_checkpoint(root / "Qwen3-tiny", "qwen3", tied=True, dtype="bfloat16", seed=2),
    }


@pytest.fixture(scope="module")
def gguf_of(hf_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """Converted files, made once per (architecture, type)."""
    out_dir, made = tmp_path_factory.mktemp("gguf"), {}

    def get(arch: str, out_type: str) -> Path:
        if (arch, out_type) not in made:
            made[arch, out_type] = convert_checkpoint(
                hf_dirs[arch], out_dir / f"{arch}-{out_type}.gguf", out_type
            ).path
        return made[arch, out_type]

    return get


def fields(path: Path) -> dict:
    reader = GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def tensor_types(path: Path) -> dict[str, GGMLQuantizationType]:
    return {t.name: t.tensor_type for t in GGUFReader(path).tensors}


def broken_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ---- the file's contents ---------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_metadata_and_vocabulary(arch: str, hf_dirs, gguf_of) -> None:
    path, hf_dir = gguf_of(arch, "f16"), hf_dirs[arch]
    meta = fields(path)
    config = json.loads((hf_dir / "config.json").read_text())
    tokenizer = json.loads((hf_dir / "tokenizer.json").read_text())
    tok_config = json.loads((hf_dir / "tokenizer_config.json").read_text())
    added = {a["content"]: a["id"] for a in tokenizer["added_tokens"]}

    assert meta["general.architecture"] == arch
    assert meta["general.name"] == hf_dir.name
    assert meta["general.size_label"] == "1.5M" if arch == "qwen2" else "1.7M"
    assert meta["general.file_type"] == 1  # MOSTLY_F16
    assert meta[f"{arch}.block_count"] == config["num_hidden_layers"]
    assert meta[f"{arch}.embedding_length"] == config["hidden_size"]
    assert meta[f"{arch}.feed_forward_length"] == config["intermediate_size"]
    assert meta[f"{arch}.attention.head_count"] == config["num_attention_heads"]
    assert meta[f"{arch}.attention.head_count_kv"] == config["num_key_value_heads"]
    assert meta[f"{arch}.context_length"] == config["max_position_embeddings"]
    assert meta[f"{arch}.rope.freq_base"] == pytest.approx(1e6)
    assert meta[f"{arch}.attention.layer_norm_rms_epsilon"] == pytest.approx(1e-6)
    if arch == "qwen3":
        assert meta["qwen3.attention.key_length"] == meta["qwen3.attention.value_length"] == 128

    assert meta["tokenizer.ggml.model"] == "gpt2" and meta["tokenizer.ggml.pre"] == "qwen2"
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    assert len(tokens) == len(types) == config["vocab_size"]
    for text, token_id in tokenizer["model"]["vocab"].items():
        assert tokens[token_id] == text and types[token_id] == TokenType.NORMAL
    for text in SPECIAL_TOKENS:
        assert tokens[added[text]] == text and types[added[text]] == TokenType.CONTROL
    for text in USER_TOKENS:
        assert tokens[added[text]] == text and types[added[text]] == TokenType.USER_DEFINED
    pads = [i for i, t in enumerate(types) if t == TokenType.UNUSED]
    assert pads and all(tokens[i] == f"[PAD{i}]" for i in pads) and min(pads) == max(added.values()) + 1
    merges = [" ".join(pair) for pair in tokenizer["model"]["merges"]]
    assert meta["tokenizer.ggml.merges"] == merges
    assert meta["tokenizer.ggml.eos_token_id"] == added["<|im_end|>"]
    assert meta["tokenizer.ggml.padding_token_id"] == added["<|endoftext|>"]
    assert meta["tokenizer.ggml.add_bos_token"] is False
    assert meta["tokenizer.chat_template"] == tok_config["chat_template"]


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_tensor_names_and_types(arch: str, hf_dirs, gguf_of) -> None:
    cfg = read_config(hf_dirs[arch])
    types = tensor_types(gguf_of(arch, "f16"))
    assert set(types) == required_tensors(cfg)  # every tensor mapped, nothing extra
    assert ("output.weight" in types) is (arch == "qwen2")  # qwen3 fixture ties its embeddings
    for name, qtype in types.items():
        one_d = name.endswith(("norm.weight", ".bias"))
        assert qtype == (GGMLQuantizationType.F32 if one_d else GGMLQuantizationType.F16), name
    q8 = tensor_types(gguf_of(arch, "q8_0"))
    assert q8["blk.0.ffn_down.weight"] == GGMLQuantizationType.Q8_0
    assert q8["token_embd.weight"] == GGMLQuantizationType.Q8_0
    assert q8["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32


def test_tensor_values_round_trip(hf_dirs, gguf_of) -> None:
    """f32 output equals the checkpoint bit for bit, including bf16 sources (no transposes, no mix-ups)."""
    from safetensors.torch import load_file

    for arch, hf_name, gguf_name in [
        ("qwen2", "model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias"),
        ("qwen2", "model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight"),
        ("qwen2", "lm_head.weight", "output.weight"),
        ("qwen3", "model.layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight"),
        ("qwen3", "model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight"),
    ]:
        expected = load_file(hf_dirs[arch] / "model.safetensors")[hf_name].float().numpy()
        tensor = next(t for t in GGUFReader(gguf_of(arch, "f32")).tensors if t.name == gguf_name)
        np.testing.assert_array_equal(np.asarray(tensor.data).reshape(expected.shape), expected)


def test_bf16_widening_is_exact() -> None:
    import ml_dtypes

    values = np.array([1.0, -2.5, 3.140625, 2.0**-120, -0.0, np.inf, 65280.0], dtype=np.float32)
    stored = (values.view(np.uint32) >> 16).astype(np.uint16).view(ml_dtypes.bfloat16)  # the raw bf16 bits
    widened = to_float(stored)
    assert widened.dtype == np.float32
    np.testing.assert_array_equal(widened, values)
    assert to_float(np.ones(3, np.float16)).dtype == np.float16  # f16 is kept for an exact f16 output


def test_registrable_by_the_daemon_scan(gguf_of, tmp_path: Path) -> None:
    from qwendesk.daemon.xinference.registration import registration_spec
    from qwendesk.models.folder import scan
    from qwendesk.models.gguf_info import read_gguf

    info = read_gguf(gguf_of("qwen3", "q8_0"))
    assert info.architecture == "qwen3"
    shutil.copy(gguf_of("qwen2", "f16"), tmp_path / "tiny-f16.gguf")
    models = scan([tmp_path])
    (model,) = models.values()
    assert model.error is None and model.ok, model.error
    assert registration_spec(model)


def test_transformers_4_config_with_yarn_rope_scaling(hf_dirs, tmp_path: Path) -> None:
    """Real Qwen2.5 configs put rope_theta at the top and may enable YaRN for 128k context."""
    src = broken_copy(hf_dirs["qwen2"], tmp_path / "ckpt")
    config = json.loads((src / "config.json").read_text())
    config.pop("rope_parameters", None)
    config |= {
        "rope_theta": 500000.0,
        "rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768},
    }
    (src / "config.json").write_text(json.dumps(config))
    meta = fields(convert_checkpoint(src, tmp_path / "yarn.gguf", "f16").path)
    assert meta["qwen2.rope.freq_base"] == pytest.approx(500000.0)
    assert meta["qwen2.rope.scaling.type"] == "yarn"
    assert meta["qwen2.rope.scaling.factor"] == pytest.approx(4.0)
    assert meta["qwen2.rope.scaling.original_context_length"] == 32768


def test_default_output_names(tmp_path: Path) -> None:
    from qwendesk.daemon.config import load_settings
    from qwendesk.models.convert_command import default_output

    settings = load_settings()
    folder = settings.model_folders[0]
    assert (
        default_output(settings, "Qwen2.5-7B-Instruct", "q4_k_m")
        == folder / "Qwen2.5-7B-Instruct-q4_k_m.gguf"
    )
    assert default_output(settings, "Qwen3-8B-f16", "q4_0") == folder / "Qwen3-8B-q4_0.gguf"
    assert (
        default_output(settings, "qwen2.5-0.5b-instruct-fp16", "q8_0").name
        == "qwen2.5-0.5b-instruct-q8_0.gguf"
    )
    assert default_output(settings, "Qwen3-4B-Q8_0", "q4_k_m").name == "Qwen3-4B-q4_k_m.gguf"


# ---- writing safely ------------------------------------------------------------------------------
def test_writes_part_file_then_renames_and_reports_progress(hf_dirs, tmp_path: Path) -> None:
    out, seen = tmp_path / "m-f16.gguf", []

    def progress(done: int, total: int, item: str) -> None:
        assert not out.exists() and files.part_path(out).exists()
        seen.append((done, total, item))

    convert_checkpoint(hf_dirs["qwen2"], out, "f16", progress=progress)
    assert out.exists() and not files.part_path(out).exists()
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and seen[-1] == (seen[-1][1], seen[-1][1], "done")
    assert len(seen) == len(required_tensors(read_config(hf_dirs["qwen2"]))) + 1


def test_refuses_to_overwrite_without_force(hf_dirs, tmp_path: Path) -> None:
    out = tmp_path / "m.gguf"
    out.write_bytes(b"keep me")
    with pytest.raises(QwendeskError, match="already exists.*--force"):
        convert_checkpoint(hf_dirs["qwen2"], out, "f16")
    assert out.read_bytes() == b"keep me"
    convert_checkpoint(hf_dirs["qwen2"], out, "f16", force=True)
    assert out.read_bytes()[:4] == b"GGUF"


def test_not_enough_space_before_writing(hf_dirs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda p: usage._replace(free=1024 * 1024))
    with pytest.raises(NotEnoughSpace, match="Not enough disk space: converting .* needs"):
        convert_checkpoint(hf_dirs["qwen2"], tmp_path / "m.gguf", "f16")
    assert list(tmp_path.iterdir()) == []


# ---- bad input -------------------------------------------------------------------------------------
def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="No config.json in .*Hugging Face checkpoint"):
        convert_checkpoint(tmp_path, tmp_path / "x.gguf")
    with pytest.raises(ModelFileError, match="not a folder"):
        convert_checkpoint(tmp_path / "nope", tmp_path / "x.gguf")


@pytest.mark.parametrize(
    ("architecture", "message"),
    [
        (
            "LlamaForCausalLM",
            "LlamaForCausalLM is not a supported checkpoint; qwendesk converts Qwen2, Qwen2.5 and Qwen3",
        ),
        (
            "Qwen3MoeForCausalLM",
            "Qwen3MoeForCausalLM is not supported; qwendesk converts Qwen2, Qwen2.5 and Qwen3",
        ),
    ],
)
def test_unsupported_architecture(architecture: str, message: str, hf_dirs, tmp_path: Path) -> None:
    src = broken_copy(hf_dirs["qwen2"], tmp_path / "ckpt")
    config = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**config, "architectures": [architecture]}))
    with pytest.raises(ModelFileError, match=message):
        convert_checkpoint(src, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists() and not (tmp_path / "x.gguf.part").exists()


def test_missing_or_foreign_tokenizer(hf_dirs, tmp_path: Path) -> None:
    src = broken_copy(hf_dirs["qwen2"], tmp_path / "ckpt")
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    (src / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="No tokenizer.json .*AutoTokenizer.save_pretrained"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\s+"
    (src / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(ModelFileError, match="pre-tokenizer .* is not Qwen's"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_missing_weights_and_tensors(hf_dirs, tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    src = broken_copy(hf_dirs["qwen2"], tmp_path / "ckpt")
    tensors = load_file(src / "model.safetensors")
    (src / "model.safetensors").unlink()
    (src / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match="PyTorch .bin weights; re-save it with safe_serialization"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    del tensors["model.layers.1.mlp.up_proj.weight"]
    save_file(tensors, str(src / "model.safetensors"))
    with pytest.raises(ModelFileError, match="lacks 1 tensor.*blk.1.ffn_up.weight"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.0.mlp.up_proj.weight"]
    tensors["model.visual.patch_embed.weight"] = tensors["model.norm.weight"]
    save_file(tensors, str(src / "model.safetensors"))
    with pytest.raises(ModelFileError, match="Unexpected tensor model.visual.patch_embed.weight"):
        convert_checkpoint(src, tmp_path / "x.gguf")


# ---- the CLI -----------------------------------------------------------------------------------------
def test_cli_converts_into_the_models_folder(hf_dirs, qwendesk_home: Path, capsys) -> None:
    from qwendesk.daemon.cli import main
    from qwendesk.daemon.config import load_settings

    assert main(["convert", str(hf_dirs["qwen3"]), "--quantize", "q8_0", "--quiet"]) == 0
    folder = load_settings().model_folders[0]
    assert [p.name for p in folder.iterdir()] == ["Qwen3-tiny-q8_0.gguf"]
    assert "ready to start and chat" in capsys.readouterr().out
    assert main(["convert", str(hf_dirs["qwen3"]), "--quantize", "q8_0", "--quiet"]) == 1
    assert "already exists" in capsys.readouterr().err


# ---- against transformers and llama.cpp -----------------------------------------------------------
def hf_tokenize(hf_dir: Path, text: str) -> list[int]:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(hf_dir).encode(text, add_special_tokens=False)


def hf_logits(hf_dir: Path, ids: list[int]) -> np.ndarray:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def llama_logits(path: Path, ids: list[int]) -> np.ndarray:
    from llama_cpp import GGML_TYPE_F32, Llama

    # f32 KV cache so the comparison measures the weights, not llama.cpp's default f16 cache
    llm = Llama(
        str(path),
        n_ctx=128,
        logits_all=True,
        verbose=False,
        n_threads=2,
        type_k=GGML_TYPE_F32,
        type_v=GGML_TYPE_F32,
    )
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


@pytest.mark.convert
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_llama_cpp_tokenizes_like_hugging_face(arch: str, hf_dirs, gguf_of) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    llm = llama_cpp.Llama(str(gguf_of(arch, "f16")), vocab_only=True, verbose=False)
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(hf_dirs[arch] / "tokenizer.json"))
    chinese = hf_tokenize(hf_dirs[arch], "今天天气很好，我们去公园散步吧。")
    assert len(chinese) < len("今天天气很好，我们去公园散步吧。".encode()) / 3  # Chinese merges are exercised
    for text in TEXTS:
        expected = hf_tokenize(hf_dirs[arch], text)
        assert expected == raw.encode(text, add_special_tokens=False).ids  # both Hugging Face paths agree
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == expected, text
        assert llm.detokenize(expected, special=True).decode() == text


# Bound on max |logit difference| / max |logit| per type. Measured on these checkpoints (2 layers, random):
# f32 ~1e-6, f16 ~1e-3, q8_0 ~3e-2 (llama.cpp also quantizes activations to 8 bits for q8_0 matmuls).
LOGIT_TOLERANCE = {"f32": 1e-5, "f16": 5e-3, "q8_0": 8e-2}
MIN_COSINE = {"f32": 0.999999, "f16": 0.9999, "q8_0": 0.999}


@pytest.mark.convert
@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
@pytest.mark.parametrize("out_type", ["f32", "f16", "q8_0"])
def test_logits_match_transformers(arch: str, out_type: str, hf_dirs, gguf_of) -> None:
    pytest.importorskip("llama_cpp")
    ids = hf_tokenize(hf_dirs[arch], PROMPT)
    expected = hf_logits(hf_dirs[arch], ids)
    got = llama_logits(gguf_of(arch, out_type), ids)
    assert got.shape == expected.shape
    rel = float(np.abs(got - expected).max() / np.abs(expected).max())
    cosine = float((got * expected).sum() / np.linalg.norm(got) / np.linalg.norm(expected))
    agree = float((got.argmax(-1) == expected.argmax(-1)).mean())
    print(
        f"{arch} {out_type}: max|diff|/max|logit| = {rel:.2e}, cosine = {cosine:.7f}, argmax agree = {agree:.2f}"
    )
    assert rel < LOGIT_TOLERANCE[out_type]
    assert cosine > MIN_COSINE[out_type]
    assert agree >= (1.0 if out_type == "f32" else 0.8)


# ---- streaming: peak memory stays near one tensor ------------------------------------------------
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the (large) pytest parent.
PEAK_RSS_SCRIPT = """
import json, re, sys
from pathlib import Path
from qwendesk.models.convert import convert_checkpoint
def hwm():
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
before = hwm()
convert_checkpoint(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
print(json.dumps({"before": before, "peak": hwm()}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_peak_memory_is_about_one_tensor(out_type: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A 400 MB f32 checkpoint (largest tensor 64 MB) converts with far less extra memory than the model."""
    import subprocess
    import sys

    from .hf_checkpoints import write_fake_checkpoint

    src = tmp_path_factory.getbasetemp() / "fake-400mb"
    if not (src / "config.json").exists():
        write_fake_checkpoint(src, hidden=1024, ffn=2816, layers=6, vocab=16384)
    weights = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    largest = 16384 * 1024 * 4
    out = tmp_path_factory.mktemp("peak") / "big.gguf"
    run = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_SCRIPT, str(src), str(out), out_type], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    rss = json.loads(run.stdout.strip().splitlines()[-1])
    extra = rss["peak"] - rss["before"]
    print(f"{out_type}: checkpoint {weights / 2**20:.0f} MiB, peak RSS growth {extra / 2**20:.0f} MiB")
    assert extra < 1.5 * largest and extra < weights / 4
    assert out.stat().st_size > weights / 4.5
