"""`qwendesk quantize` and `convert --quantize q4_*`: llama.cpp's quantizer on converted tiny Qwen models."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

from qwendesk.models.convert import convert_checkpoint
from qwendesk.models.errors import ModelFileError, QwendeskError
from qwendesk.models.files import part_path
from qwendesk.models.quantize import quantize_gguf

from .hf_checkpoints import build_checkpoint

needs_llama = pytest.mark.skipif(
    __import__("importlib").util.find_spec("llama_cpp") is None,
    reason="needs qwendesk[convert] (llama-cpp-python)",
)
# quantized size / f16 size for the tiny untied Qwen2 (hidden 256: every row splits into 256-blocks, so no
# fallback types). q4_k_m keeps output.weight at q6_K and half of ffn_down/attn_v at q6_K, hence > q4_0.
SIZE_RATIO = {"q4_0": (0.27, 0.40), "q4_k_m": (0.30, 0.45)}


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_checkpoint(
        tmp_path_factory.mktemp("hf") / "Qwen2.5-tiny-Instruct", "qwen2", tied=False, seed=3
    )


@pytest.fixture(scope="module")
def f16_gguf(hf_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_checkpoint(
        hf_dir, tmp_path_factory.mktemp("f16") / "Qwen2.5-tiny-Instruct-f16.gguf", "f16"
    ).path


def tensor_types(path: Path) -> dict[str, GGMLQuantizationType]:
    return {t.name: t.tensor_type for t in GGUFReader(path).tensors}


def chat(path: Path) -> dict:
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=256, verbose=False, n_threads=2, seed=0)
    messages = [{"role": "user", "content": "你好! Say hello."}]
    return llm.create_chat_completion(messages=messages, max_tokens=8, temperature=0.0)


# ---- llama.cpp's quantizer ----------------------------------------------------------------------
@needs_llama
@pytest.mark.convert
@pytest.mark.parametrize("qtype", ["q4_0", "q4_k_m"])
def test_quantized_file_loads_chats_and_shrinks(qtype: str, f16_gguf: Path, tmp_path: Path) -> None:
    out = tmp_path / f"tiny-{qtype}.gguf"
    seen: list[tuple[int, int, str]] = []
    assert quantize_gguf(f16_gguf, out, qtype, progress=lambda d, t, i: seen.append((d, t, i))) == out
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # the .part is gone
    assert seen and seen[-1][0] == seen[-1][1] and seen[-1][2] == "done"

    ratio = out.stat().st_size / f16_gguf.stat().st_size
    print(f"{qtype}: {out.stat().st_size} / {f16_gguf.stat().st_size} bytes = {ratio:.3f}")
    low, high = SIZE_RATIO[qtype]
    assert low < ratio < high

    types = tensor_types(out)
    main_type = GGMLQuantizationType.Q4_0 if qtype == "q4_0" else GGMLQuantizationType.Q4_K
    assert types["blk.0.attn_q.weight"] == main_type and types["blk.1.ffn_up.weight"] == main_type
    assert types["blk.0.attn_norm.weight"] == GGMLQuantizationType.F32
    assert GGUFReader(out).fields["general.architecture"].contents() == "qwen2"

    reply = chat(out)
    message = reply["choices"][0]["message"]
    assert message["role"] == "assistant" and isinstance(message["content"], str)
    assert reply["usage"]["completion_tokens"] > 0


@needs_llama
@pytest.mark.convert
def test_convert_with_q4_k_m_lands_in_the_models_folder(hf_dir: Path, qwendesk_home: Path, capsys) -> None:
    from qwendesk.daemon.cli import main
    from qwendesk.daemon.config import load_settings
    from qwendesk.models.folder import scan

    assert main(["convert", str(hf_dir), "--quantize", "q4_k_m", "--quiet"]) == 0
    folder = load_settings().model_folders[0]
    assert [p.name for p in folder.iterdir()] == ["Qwen2.5-tiny-Instruct-q4_k_m.gguf"]  # no f16 or .part left
    assert "ready to start and chat" in capsys.readouterr().out
    (model,) = scan([folder]).values()
    assert model.ok, model.error
    assert model.info.architecture == "qwen2"


@needs_llama
@pytest.mark.convert
def test_quantize_cli_default_output_name(f16_gguf: Path, qwendesk_home: Path) -> None:
    from qwendesk.daemon.cli import main
    from qwendesk.daemon.config import load_settings

    assert main(["quantize", str(f16_gguf), "--type", "q4_0", "--quiet"]) == 0
    folder = load_settings().model_folders[0]
    assert [p.name for p in folder.iterdir()] == ["Qwen2.5-tiny-Instruct-q4_0.gguf"]


@needs_llama
@pytest.mark.convert
def test_already_quantized_input_is_refused_unless_asked(f16_gguf: Path, tmp_path: Path) -> None:
    q8 = tmp_path / "q8.gguf"
    quantize_gguf(f16_gguf, q8, "q8_0")
    with pytest.raises(ModelFileError, match="already quantized.*--allow-requantize"):
        quantize_gguf(q8, tmp_path / "q4.gguf", "q4_0")
    quantize_gguf(q8, tmp_path / "q4.gguf", "q4_0", allow_requantize=True)
    assert tensor_types(tmp_path / "q4.gguf")["blk.0.attn_q.weight"] == GGMLQuantizationType.Q4_0


@needs_llama
@pytest.mark.convert
def test_quantizer_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    """An architecture llama.cpp does not know makes llama_model_quantize fail; no OUT, no .part remains."""
    src = tmp_path / "alien.gguf"
    writer = GGUFWriter(src, "not-an-architecture")
    writer.add_tensor("token_embd.weight", np.zeros((32, 256), dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    out = tmp_path / "out.gguf"
    with pytest.raises(ModelFileError, match="llama.cpp could not quantize"):
        quantize_gguf(src, out, "q4_0")
    assert not out.exists() and not part_path(out).exists()


# ---- clear errors without llama.cpp work ----------------------------------------------------------
def test_missing_llama_cpp_says_what_to_install(
    f16_gguf: Path, hf_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp now raises ImportError
    with pytest.raises(QwendeskError, match=r"pip install 'qwendesk\[convert\]'"):
        quantize_gguf(f16_gguf, tmp_path / "q.gguf", "q4_0")
    with pytest.raises(QwendeskError, match=r"pip install 'qwendesk\[convert\]'"):
        convert_checkpoint(hf_dir, tmp_path / "c.gguf", "q4_k_m")  # before the f16 pass, not after it
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs(f16_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        quantize_gguf(tmp_path / "missing.gguf", tmp_path / "q.gguf", "q4_0")
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelFileError, match="not a readable GGUF"):
        quantize_gguf(junk, tmp_path / "q.gguf", "q4_0")
    with pytest.raises(QwendeskError, match="Unknown quantization 'q3_x'"):
        quantize_gguf(f16_gguf, tmp_path / "q.gguf", "q3_x")
    with pytest.raises(QwendeskError, match="different file"):
        quantize_gguf(f16_gguf, f16_gguf, "q4_0")
    existing = tmp_path / "exists.gguf"
    shutil.copy(f16_gguf, existing)
    with pytest.raises(QwendeskError, match="already exists"):
        quantize_gguf(f16_gguf, existing, "q4_0")
    assert existing.read_bytes() == f16_gguf.read_bytes()
