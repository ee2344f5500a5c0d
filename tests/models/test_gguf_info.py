"""read_gguf over real files: SmolLM2, synthetic Qwen, and broken copies of them."""

from __future__ import annotations

import os
import random
import shutil
import struct
from pathlib import Path

import pytest

from qwendesk.models.errors import ModelFileError
from qwendesk.models.gguf_info import LLAMA_CPP_ARCHITECTURES, read_gguf
from tests.fixtures.synthetic import write_minimal_gguf, write_qwen_gguf


def test_smollm2_metadata(smollm2_gguf: Path) -> None:
    info = read_gguf(smollm2_gguf)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.size_label == "135M"
    assert info.context_length == 8192
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert (info.bos_token_id, info.eos_token_id) == (1, 2)
    assert info.eos_token == "<|im_end|>"
    assert (info.block_count, info.embedding_length, info.head_count, info.head_count_kv) == (30, 576, 9, 3)
    assert info.file_size == smollm2_gguf.stat().st_size
    assert info.data_offset + info.tensor_data_bytes <= info.file_size
    assert 130e6 < info.parameter_count < 140e6
    assert not info.is_projector and not info.is_split and not info.supports_tools
    # K and V, 30 layers, 3 KV heads of 64 dims, f16
    assert info.kv_cache_bytes(4096) == 30 * 4096 * 3 * (64 + 64) * 2


def test_reader_releases_the_file(smollm2_gguf: Path) -> None:
    read_gguf(smollm2_gguf)
    maps = Path("/proc/self/maps").read_text()
    assert str(smollm2_gguf) not in maps  # the mmap is closed (Windows could not delete a mapped file)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_synthetic_qwen_metadata(arch: str, request: pytest.FixtureRequest) -> None:
    info = read_gguf(request.getfixturevalue(f"{arch}_gguf"))
    assert info.architecture == arch
    assert info.quantization == "Q8_0" and info.file_type == 7
    assert info.eos_token == "<|im_end|>"
    assert info.supports_tools
    assert info.context_length == 4096
    assert info.key_length == (16 if arch == "qwen3" else None)
    assert info.kv_cache_bytes(100) == 2 * 100 * 2 * (16 + 16) * 2


def test_split_shards(tmp_path: Path) -> None:
    first = write_qwen_gguf(tmp_path / "s.gguf", split_max_tensors=12, file_type="Q4_0")
    shards = sorted(tmp_path.glob("s-*.gguf"))
    assert first == shards[0] and len(shards) == 3
    infos = [read_gguf(p) for p in shards]
    assert [i.split_no for i in infos] == [0, 1, 2]
    assert {i.split_count for i in infos} == {3}
    assert infos[0].architecture == "qwen2" and infos[1].architecture is None
    assert sum(i.tensor_count for i in infos) == infos[0].split_tensors_count


def test_projector_and_fallbacks(tmp_path: Path) -> None:
    proj = read_gguf(write_minimal_gguf(tmp_path / "mmproj.gguf", "clip", general_type="mmproj"))
    assert proj.is_projector
    plain = read_gguf(write_minimal_gguf(tmp_path / "m.gguf", "llama", general_type=None))
    assert plain.quantization == "F16"  # no general.file_type: the dominant tensor type
    assert plain.size_label == "0.13K" and plain.parameter_count == 128
    assert plain.chat_template is None


def test_unsupported_architecture(tmp_path: Path) -> None:
    path = write_minimal_gguf(tmp_path / "odd.gguf", "xyz")
    with pytest.raises(ModelFileError, match="architecture 'xyz'.*not supported by llama.cpp"):
        read_gguf(path)
    assert {"qwen2", "qwen3", "llama", "qwen2vl", "qwen3moe"} <= LLAMA_CPP_ARCHITECTURES


def test_truncated_tensor_data(qwen2_gguf: Path, tmp_path: Path) -> None:
    data = qwen2_gguf.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ModelFileError) as exc:
        read_gguf(cut)
    assert (
        f"is truncated: tensor data ends at {len(data)} but the file has {len(data) - 1000} bytes"
        in exc.value.message
    )
    assert "did not finish" in exc.value.message


def test_truncated_header(smollm2_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.gguf"
    with smollm2_gguf.open("rb") as src:
        cut.write_bytes(src.read(100_000))  # the vocabulary is cut in half
    with pytest.raises(ModelFileError, match="is truncated"):
        read_gguf(cut)


def test_not_gguf(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("these are my notes, not a model\n" * 10)
    with pytest.raises(ModelFileError, match=r"'notes.gguf' is not a GGUF file \(bad magic\)"):
        read_gguf(text)
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(ModelFileError, match="is empty"):
        read_gguf(empty)
    with pytest.raises(ModelFileError, match="does not exist"):
        read_gguf(tmp_path / "missing.gguf")
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(ModelFileError, match="is a folder"):
        read_gguf(tmp_path / "dir.gguf")


@pytest.mark.parametrize("version", [1, 4])
def test_unsupported_version(version: int, qwen2_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(qwen2_gguf.read_bytes())
    data[4:8] = struct.pack("<I", version)
    bad = tmp_path / "v.gguf"
    bad.write_bytes(data)
    with pytest.raises(ModelFileError, match=f"GGUF version {version} is not supported"):
        read_gguf(bad)


def test_absurd_counts(qwen2_gguf: Path, tmp_path: Path) -> None:
    data = bytearray(qwen2_gguf.read_bytes())
    data[16:24] = struct.pack("<Q", 2**60)  # kv_count
    bad = tmp_path / "c.gguf"
    bad.write_bytes(data)
    with pytest.raises(ModelFileError, match="corrupt"):
        read_gguf(bad)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_permission_denied_chmod(qwen2_gguf: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked.gguf"
    shutil.copy(qwen2_gguf, locked)
    locked.chmod(0)
    with pytest.raises(ModelFileError, match="permission denied"):
        read_gguf(locked)


def test_permission_denied_message(qwen2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """We run as root, so the OS error is injected where the file is opened."""

    def deny(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "open", deny)
    with pytest.raises(ModelFileError, match="cannot be read: permission denied"):
        read_gguf(qwen2_gguf)


def test_random_corruption_never_escapes(qwen2_gguf: Path, tmp_path: Path) -> None:
    """Flipped header bytes give a ModelFileError or a valid read, never another exception."""
    original = qwen2_gguf.read_bytes()
    header_end = read_gguf(qwen2_gguf).data_offset
    rng = random.Random(1234)
    bad = tmp_path / "fuzz.gguf"
    outcomes = {"error": 0, "ok": 0}
    for _ in range(300):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(header_end)] = rng.randrange(256)
        bad.write_bytes(data[: rng.choice([len(data), rng.randrange(24, len(data))])])
        try:
            read_gguf(bad)
            outcomes["ok"] += 1
        except ModelFileError:
            outcomes["error"] += 1
    assert outcomes["error"] > 50
