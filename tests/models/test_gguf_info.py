"""read_gguf over real files: SmolLM2, synthetic Qwen, and broken copies of them."""

from __future__ import annotations

import ast
import json
import os
import pickle
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from qwendesk.models import gguf_info
from qwendesk.models.errors import ModelFileError
from qwendesk.models.gguf_info import LLAMA_CPP_ARCHITECTURES, TruncatedModelFile, read_gguf
from tests.conftest import REPO
from tests.fixtures.synthetic import write_minimal_gguf, write_qwen_gguf
from tests.models.gguf_files import (
    QWEN_MERGES,
    QWEN_VOCAB,
    write_many_entries,
    write_many_strings,
    write_many_tensors,
    write_near_limits,
    write_qwen_header,
)


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
    real_open = os.open

    def deny(path, *args, **kwargs):
        if Path(path) == qwen2_gguf:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", deny)
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


# ---- files that change, or are crafted, while we read them -----------------------------------------
@pytest.fixture(scope="module")
def qwen_header(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Qwen2.5-0.5B-shaped GGUF with the real-sized tokenizer (151,936 tokens, 151,387 merges); read-only."""
    return write_qwen_header(tmp_path_factory.mktemp("qwen-header") / "qwen2.5-0.5b-q8_0.gguf")


def test_real_sized_qwen_header_is_read_whole(qwen_header: Path) -> None:
    info = read_gguf(qwen_header)
    assert (info.architecture, info.vocab_size, info.tensor_count) == ("qwen2", QWEN_VOCAB, 290)
    assert (info.eos_token, info.bos_token, info.quantization) == ("<|im_end|>", "<|endoftext|>", "Q8_0")
    assert info.supports_tools and info.size_label == "0.5B" and info.context_length == 32768
    # The limits admit it with room to spare: a ~5 MiB header, a fifth of the strings allowed.
    assert 4 * 2**20 < info.data_offset < gguf_info.MAX_HEADER_BYTES // 8
    assert QWEN_VOCAB + QWEN_MERGES < gguf_info.MAX_ARRAY_STRINGS // 5


def test_summary_keeps_only_what_the_daemon_uses(qwen_header: Path, tmp_path: Path) -> None:
    """The summary is a few KiB whatever the header holds: no tokenizer, no unknown keys."""
    info = read_gguf(qwen_header)
    assert len(pickle.dumps(info)) < 16 * 1024  # the 2.6 KB chat template is most of it
    assert set(info.metadata) <= {
        *gguf_info._TEXT_KEYS, *gguf_info._SCALAR_KEYS, *gguf_info._LIST_KEYS,
        *(f"qwen2.{s}" for s in gguf_info._ARCH_SUFFIXES),
    }  # fmt: skip
    crafted = read_gguf(write_many_entries(tmp_path / "many.gguf", 16_000), check_architecture=False)
    assert crafted.metadata == {} and len(pickle.dumps(crafted)) < 2048


def test_long_values_are_kept_cut(tmp_path: Path) -> None:
    template = "{% if tools %}" + "x" * (gguf_info.MAX_TEMPLATE_BYTES * 3)
    path = write_minimal_gguf(tmp_path / "long.gguf", "llama", name="n" * 100_000, chat_template=template)
    info = read_gguf(path)
    assert info.chat_template == template[: gguf_info.MAX_TEMPLATE_BYTES] and info.supports_tools
    assert info.name == "n" * gguf_info.MAX_TEXT_BYTES


def test_truncated_between_two_reads_is_a_clean_error(
    qwen_header: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file shrinks after the first 1 MiB chunk was read: the next read comes up short."""
    path = tmp_path / "shrinking.gguf"
    shutil.copy(qwen_header, path)
    real_fill = gguf_info._Header._fill
    fills = []

    def fill_then_truncate(self, n: int) -> None:
        real_fill(self, n)
        fills.append(self.pos)
        if len(fills) == 1:
            os.truncate(path, 4096)

    monkeypatch.setattr(gguf_info._Header, "_fill", fill_then_truncate)
    with pytest.raises(TruncatedModelFile, match="changed while it was being read"):
        read_gguf(path)
    assert len(fills) == 1  # the second read found the file cut


def test_a_header_read_that_stalls_is_stopped(qwen2_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last bound: reading stops at a deadline (as if the disk stalled) with an error saying so."""
    monkeypatch.setattr(gguf_info, "HEADER_SECONDS", -1.0)
    with pytest.raises(ModelFileError, match="header took longer than -1 s: the disk is too slow"):
        read_gguf(qwen2_gguf)


RACE = """
import collections, os, sys, threading, time
from qwendesk.models.errors import ModelFileError
from qwendesk.models.gguf_info import read_gguf

path, reads = sys.argv[1], int(sys.argv[2])
size = os.path.getsize(path)
with open(path, "rb") as fh:
    head = fh.read(8 << 20)
stop = threading.Event()

def churn():  # cut the file to one page, then restore it, again and again
    fd = os.open(path, os.O_WRONLY)
    while not stop.is_set():
        time.sleep(0.02)
        os.ftruncate(fd, 4096)
        time.sleep(0.001)
        os.pwrite(fd, head[4096:], 4096)
        os.ftruncate(fd, size)

threading.Thread(target=churn, daemon=True).start()
outcomes = collections.Counter()
for _ in range(reads):
    try:
        read_gguf(path)
        outcomes["ok"] += 1
    except ModelFileError as exc:
        outcomes["changed while read" if "changed while" in exc.message else "error"] += 1
stop.set()
print(dict(outcomes))
"""


def test_file_truncated_while_being_read_never_kills_the_process(qwen_header: Path, tmp_path: Path) -> None:
    """A second thread cuts and restores the file while it is read again and again. Through a memory map,
    the first read that touches a page past the cut dies with SIGBUS (the process, not the read)."""
    path = tmp_path / "churned.gguf"
    shutil.copy(qwen_header, path)
    run = subprocess.run(
        [sys.executable, "-c", RACE, str(path), "120"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, f"the reader died (signal {-run.returncode}): {run.stderr[-2000:]}"
    outcomes = ast.literal_eval(run.stdout.strip())
    print(outcomes)
    assert sum(outcomes.values()) == 120 and outcomes.keys() - {"ok"}  # some reads met the cut file


CRAFTED = """
import gc, json, os, sys, time
from pathlib import Path
from qwendesk.models import folder
from qwendesk.models.errors import ModelFileError
from qwendesk.models.gguf_info import read_gguf

def status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def rchar():
    return int(Path("/proc/self/io").read_text().split("rchar:")[1].split()[0])

path = Path(sys.argv[1])
gc.collect()
rss0, io0, t0 = status("VmRSS"), rchar(), time.perf_counter()
try:
    read_gguf(path, check_architecture=False)
    error = None
except ModelFileError as exc:
    error = exc.message
seconds, read_bytes = time.perf_counter() - t0, rchar() - io0
models = folder.scan([path.parent])
gc.collect()
print(json.dumps({
    "error": error, "seconds": seconds, "read": read_bytes, "rss_before": rss0,
    "peak_growth": status("VmHWM") - rss0, "rss_after": status("VmRSS"),
    "cached": len(folder._INFO_CACHE), "listed": {n: m.error for n, m in models.items()},
}))
"""


@pytest.mark.parametrize(
    ("writer", "count", "refusal"),
    [
        (write_many_entries, 2_000_000, "2,000,000 metadata entries"),
        (write_many_strings, 3_000_000, "more than 2,097,152 strings"),
        (write_many_tensors, 1_000_000, "1,000,000 tensors"),
    ],
)
def test_crafted_headers_are_refused_with_bounded_work(
    writer, count: int, refusal: str, tmp_path: Path
) -> None:
    """Millions of tiny entries (the 304 MiB file of issue #14 has 16.7 M) are refused after reading a few
    bytes, in a fresh process whose peak memory barely moves, and the scan cache keeps nothing of them."""
    path = writer(tmp_path / "crafted" / "crafted.gguf", count)
    run = subprocess.run(
        [sys.executable, "-c", CRAFTED, str(path)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    print(f"{path.stat().st_size >> 20} MiB, {count:,} entries: {result}")  # figures for the report (-s)
    assert refusal in result["error"] and "corrupt" in result["error"]
    assert result["read"] < 4 * 2**20 < path.stat().st_size  # never read through
    assert result["peak_growth"] < 200 * 2**20
    assert result["cached"] == 0 and list(result["listed"].values()) == [result["error"]]


def test_costliest_admitted_header_is_summarised_in_bounded_memory(tmp_path: Path) -> None:
    """At every limit at once (entries, strings, tensors): read whole, and the summary stays small."""
    path = write_near_limits(
        tmp_path / "crafted" / "edge.gguf",
        entries=gguf_info.MAX_KV_COUNT,
        strings=gguf_info.MAX_ARRAY_STRINGS,
        tensors=gguf_info.MAX_TENSOR_COUNT,
    )
    run = subprocess.run(
        [sys.executable, "-c", CRAFTED, str(path)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    print(f"{path.stat().st_size >> 20} MiB at the limits: {result}")  # figures for the report (-s)
    assert result["error"] is None
    assert result["peak_growth"] < 200 * 2**20
    assert result["cached"] == 1  # the scan keeps its summary, which is small:
    assert len(pickle.dumps(read_gguf(path))) < 2048
