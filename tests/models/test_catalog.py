"""The built-in Qwen GGUF catalog, name resolution, hub URLs, the memory-fit estimate and `qwendesk catalog`."""

from __future__ import annotations

import argparse
import json
import re

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.models.catalog import (
    BadCatalog,
    Catalog,
    CatalogError,
    estimate_memory,
    file_url,
    fits,
    human_size,
    kv_cache_bytes,
    load_catalog,
)
from qwendesk.models.commands import register

ISSUE_MODELS = [
    "qwen2.5:0.5b-instruct",
    "qwen2.5:1.5b-instruct",
    "qwen2.5:3b-instruct",
    "qwen2.5:7b-instruct",
    "qwen2.5-coder:1.5b-instruct",
    "qwen2.5-coder:7b-instruct",
    "qwen3:0.6b",
    "qwen3:1.7b",
    "qwen3:4b",
    "qwen3:8b",
    "qwen2.5-vl:3b-instruct",
    "qwen3-embedding:0.6b",
    "bge-reranker:v2-m3",
]
SPEECH_MODELS = ["faster-whisper:tiny", "faster-whisper:base", "faster-whisper:small"]
SPEECH_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def test_builtin_catalog_has_the_issue_models_with_sane_entries(catalog):
    assert sorted(catalog.models) == sorted(ISSUE_MODELS + SPEECH_MODELS)
    for release in catalog.releases():
        if release.model.kind == "speech":
            continue  # faster-whisper folders: test_speech_releases_are_folders
        assert re.fullmatch(r"[a-z0-9.\-]+:[a-z0-9.\-]+-(q\d_k_m|q\d_k|q\d_0)", release.name), release.name
        assert 100e6 < release.size < 10e9  # laptop-sized
        for f in release.files:
            assert f.file.endswith(".gguf")
            assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        for source in ("huggingface", "modelscope"):
            assert release.model.repo(source).endswith("-GGUF")


def test_speech_releases_are_folders(catalog):
    for name in SPEECH_MODELS:
        release = catalog.resolve(name)
        assert release.model.kind == "speech" and release.name == f"{name}-f16"
        assert release.folder == "faster-whisper-" + name.split(":")[1]
        assert release.main_file == "model.bin"
        assert {f.file for f in release.files} == {*SPEECH_FILES}
        assert release.model.repo("huggingface") == "Systran/faster-whisper-" + name.split(":")[1]
        assert kv_cache_bytes(release.model.arch, 4096) == 0
    tiny, small = catalog.resolve("faster-whisper:tiny"), catalog.resolve("faster-whisper:small")
    assert 70e6 < tiny.size < small.size < 1e9
    assert catalog.default_for("speech").name == "faster-whisper:base-f16"


def test_default_is_q4_k_m_where_published(catalog):
    assert catalog.resolve("qwen2.5:7b-instruct").name == "qwen2.5:7b-instruct-q4_k_m"
    assert catalog.resolve("qwen3:8b").name == "qwen3:8b-q4_k_m"
    # Qwen publishes only Q8_0 of the smallest Qwen3 models.
    assert catalog.resolve("qwen3:0.6b").name == "qwen3:0.6b-q8_0"


def test_split_models_list_their_shards_in_order(catalog):
    release = catalog.resolve("qwen2.5:7b-instruct-q4_k_m")
    assert [f.file for f in release.files] == [
        "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf",
        "qwen2.5-7b-instruct-q4_k_m-00002-of-00002.gguf",
    ]
    assert release.main_file == "qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf"


def test_vision_model_brings_its_mmproj(catalog):
    release = catalog.resolve("qwen2.5-vl:3b-instruct")
    roles = {f.file: f.role for f in release.files}
    assert roles == {
        "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf": "mmproj",
        "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf": "model",
    }
    assert release.main_file == "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf"
    assert release.size > release.quant.size  # the projector counts in the download size


def test_only_sourced_checksums_are_present(catalog):
    with_sha = {f.file for r in catalog.releases() for f in r.files if f.sha256}
    assert with_sha == {
        "qwen2.5-1.5b-instruct-q4_k_m.gguf",
        "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf",
        "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf",
        "Qwen3-Embedding-0.6B-Q8_0.gguf",
        "bge-reranker-v2-m3-Q4_K_M.gguf",
    }


@pytest.mark.parametrize(
    ("typed", "resolved"),
    [
        ("qwen2.5:1.5b-instruct-q4_k_m", "qwen2.5:1.5b-instruct-q4_k_m"),
        ("qwen2.5:1.5b-instruct-q8_0", "qwen2.5:1.5b-instruct-q8_0"),
        ("qwen2.5:1.5b-instruct", "qwen2.5:1.5b-instruct-q4_k_m"),
        ("qwen2.5:1.5b", "qwen2.5:1.5b-instruct-q4_k_m"),
        ("  Qwen2.5-Coder:7B-Instruct ", "qwen2.5-coder:7b-instruct-q4_k_m"),
    ],
)
def test_resolve_names(catalog, typed, resolved):
    assert catalog.resolve(typed).name == resolved


def test_unknown_quantization_lists_the_available_ones(catalog):
    with pytest.raises(CatalogError, match=r"qwen3:0.6b has no quantization 'q4_k_m'.*available: q8_0"):
        catalog.resolve("qwen3:0.6b-q4_k_m")


def test_unknown_name_suggests_close_ones(catalog):
    with pytest.raises(CatalogError, match="Did you mean qwen2.5:1.5b-instruct") as info:
        catalog.resolve("qwen2.5:1.5b-instrct")
    assert info.value.code == "not_in_catalog" and "qwendesk catalog" in info.value.message


def test_hub_urls():
    assert (
        file_url("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "a.gguf", "huggingface", "https://huggingface.co/")
        == "https://huggingface.co/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/main/a.gguf"
    )
    assert (
        file_url("Qwen/Qwen2.5-1.5B-Instruct-GGUF", "a.gguf", "modelscope", "https://modelscope.cn")
        == "https://modelscope.cn/models/Qwen/Qwen2.5-1.5B-Instruct-GGUF/resolve/master/a.gguf"
    )


def test_memory_estimate_is_size_x_1_2_plus_kv_cache(catalog):
    release = catalog.resolve("qwen2.5:7b-instruct")
    kv = kv_cache_bytes(release.model.arch, 4096)
    assert kv == 2 * 28 * 4 * 128 * 4096 * 2  # K+V, 28 layers, 4 KV heads, head dim 128, f16
    estimate = estimate_memory(release, 4096)
    assert estimate == int(release.size * 1.2) + kv
    assert fits(release, 4096, estimate + 1) and not fits(release, 4096, estimate)


def test_user_catalog_file_adds_entries(tmp_path):
    extra = tmp_path / "mine.json"
    extra.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "mine:1b",
                        "repos": {"huggingface": "me/Mine-GGUF", "modelscope": None},
                        "arch": {"layers": 2, "kv_heads": 1, "head_dim": 8, "context_length": 512},
                        "default": "q8_0",
                        "quantizations": {"q8_0": {"size": 1000, "files": [{"file": "mine.gguf"}]}},
                    }
                ]
            }
        )
    )
    catalog = load_catalog(extra)
    release = catalog.resolve("mine:1b")
    assert release.name == "mine:1b-q8_0" and "qwen3:4b" in catalog.models
    assert release.model.repo("modelscope") == "me/Mine-GGUF"  # no mirror: falls back to the other hub


def test_broken_catalog_file_is_a_clear_error(tmp_path):
    extra = tmp_path / "bad.json"
    extra.write_text('{"models": [{"name": "x"}]}')
    with pytest.raises(BadCatalog, match="is malformed"):
        load_catalog(extra)


def test_human_size():
    assert human_size(1117320736) == "1.1 GB"
    assert human_size(491_000_000) == "491 MB"
    assert human_size(12) == "12 B"


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="qwendesk")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args, load_settings())


def test_catalog_command_json(capsys):
    assert run(["catalog", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = {row["name"]: row for row in data["models"]}
    assert data["available_memory"] > 0 and data["n_ctx"] == 4096
    tiny, big = rows["qwen2.5:0.5b-instruct-q4_k_m"], rows["qwen3:8b-q8_0"]
    assert tiny["default"] and tiny["fits"] is (tiny["memory_estimate"] < data["available_memory"])
    assert big["memory_estimate"] > 8.71e9 * 1.2
    assert rows["qwen2.5:1.5b-instruct-q4_k_m"]["repo"] == "Qwen/Qwen2.5-1.5B-Instruct-GGUF"


def test_catalog_command_table(capsys):
    assert run(["catalog"]) == 0
    out = capsys.readouterr().out
    assert "qwen2.5:1.5b-instruct-q4_k_m *" in out and "qwen2.5-vl:3b-instruct-q8_0" in out
    assert "FITS" in out and "estimate" in out


# ---- embedders, rerankers and vision ------------------------------------------------------------
def test_default_model_of_each_kind(catalog):
    embedding, rerank, vision = (catalog.default_for(k) for k in ("embedding", "rerank", "vision"))
    assert (embedding.name, embedding.model.kind) == ("qwen3-embedding:0.6b-q8_0", "embedding")
    assert embedding.main_file == "Qwen3-Embedding-0.6B-Q8_0.gguf"
    assert embedding.model.repo("huggingface") == "Qwen/Qwen3-Embedding-0.6B-GGUF"
    assert (rerank.name, rerank.model.kind) == ("bge-reranker:v2-m3-q4_k_m", "rerank")
    assert rerank.model.repo("modelscope") == "gpustack/bge-reranker-v2-m3-GGUF"
    assert (vision.name, vision.model.kind) == ("qwen2.5-vl:3b-instruct-q4_k_m", "vision")
    with pytest.raises(CatalogError, match="no default chat model"):
        catalog.default_for("chat")


def test_encoder_estimate_has_no_kv_cache(catalog):
    """llama.cpp runs BERT-style rerankers without a KV cache; decoder embedders (Qwen3) do have one."""
    rerank = catalog.resolve("bge-reranker:v2-m3")
    assert kv_cache_bytes(rerank.model.arch, 4096) == 0
    assert estimate_memory(rerank, 4096) == int(rerank.size * 1.2)
    assert kv_cache_bytes(catalog.resolve("qwen3-embedding:0.6b").model.arch, 4096) > 0


def test_user_catalog_can_change_defaults_and_bad_defaults_are_refused(tmp_path):
    extra = tmp_path / "mine.json"
    entry = {
        "name": "mine-embed:1b",
        "kind": "embedding",
        "repos": {"huggingface": "me/Mine-GGUF"},
        "arch": {"layers": 2, "kv_heads": 1, "head_dim": 8, "context_length": 512},
        "default": "q8_0",
        "quantizations": {"q8_0": {"size": 1000, "files": [{"file": "mine.gguf"}]}},
    }
    extra.write_text(json.dumps({"defaults": {"embedding": "mine-embed:1b"}, "models": [entry]}))
    catalog = load_catalog(extra)
    assert catalog.default_for("embedding").name == "mine-embed:1b-q8_0"
    assert catalog.default_for("rerank").name == "bge-reranker:v2-m3-q4_k_m"  # the rest stays built in
    extra.write_text(json.dumps({"defaults": {"rerank": "mine-embed:1b"}, "models": [entry]}))
    with pytest.raises(BadCatalog, match="default rerank model 'mine-embed:1b' is not a rerank model"):
        load_catalog(extra)


def _unpinned(catalog: Catalog, name: str) -> Catalog:
    """`name` as in the catalog (repo, file names, roles) but without sizes and checksums, so a local hub
    can serve small stand-in files under the real names."""
    from dataclasses import replace

    model = catalog.models[name]
    bare = {
        "quants": {k: replace(q, files=tuple(replace(f, size=None, sha256=None) for f in q.files))
                   for k, q in model.quants.items()},
        "extra_files": tuple(replace(f, size=None, sha256=None) for f in model.extra_files),
    }  # fmt: skip
    return Catalog([replace(model, **bare)])


def test_pulling_the_vision_entry_leaves_a_launchable_pair(catalog, hub_server, monkeypatch, tmp_path):
    """The VL release brings its mmproj: both land in the models folder, and the scan pairs them (vision)."""
    from qwendesk.models.download import pull
    from qwendesk.models.errors import DownloadError
    from qwendesk.models.folder import scan
    from tests.fixtures.synthetic import write_minimal_gguf

    monkeypatch.setenv("QWENDESK_HUGGINGFACE_ENDPOINT", hub_server.url)
    monkeypatch.setenv("QWENDESK_CATALOG_SOURCE", "huggingface")
    settings = load_settings()
    release = catalog.resolve("qwen2.5-vl:3b-instruct")
    repo = release.model.repo("huggingface")
    model = write_minimal_gguf(
        tmp_path / "m.gguf", "qwen2vl", name="Qwen2.5 VL 3B Instruct", chat_template="{{ x }}"
    )
    projector = write_minimal_gguf(tmp_path / "p.gguf", "clip", general_type="mmproj")
    for f in release.files:
        hub_server.add(repo, f.file, (projector if f.role == "mmproj" else model).read_bytes())

    with pytest.raises(DownloadError, match="Checksum mismatch"):  # the pinned sha256s guard the real files
        pull("qwen2.5-vl:3b-instruct", settings, catalog=catalog)
    folder = settings.model_folders[0]
    assert not list(folder.glob("*.gguf"))  # nothing half-verified reached the models folder

    result = pull("qwen2.5-vl:3b-instruct", settings, catalog=_unpinned(catalog, "qwen2.5-vl:3b-instruct"))
    assert sorted(p.name for p in folder.glob("*.gguf")) == sorted(f.file for f in release.files)
    assert result.path.name == "Qwen2.5-VL-3B-Instruct-Q4_K_M.gguf"
    (entry,) = scan([folder]).values()
    assert entry.ok, entry.error
    assert (
        entry.file.name == release.main_file
        and entry.mmproj.name == "mmproj-Qwen2.5-VL-3B-Instruct-Q8_0.gguf"
    )
    assert (
        entry.registration.model_family == "qwen2.5-vl-instruct" and "vision" in entry.registration.abilities
    )
