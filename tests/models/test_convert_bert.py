"""`qwendesk convert` for BERT encoders: all-MiniLM-L6-v2 -> GGUF that llama.cpp serves as an embedding model
(checked against sentence-transformers), and a cross-encoder -> GGUF llama.cpp serves as a reranker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFReader, TokenType

from qwendesk.models.convert import convert_checkpoint, read_config
from qwendesk.models.errors import ModelFileError
from qwendesk.models.families import POOLING_CLS, POOLING_MEAN, POOLING_RANK, registration_for
from qwendesk.models.gguf_info import read_gguf

from .bert_checkpoints import build_bert, write_pooling
from .encoder_fixtures import MINILM_CONTEXT, MINILM_DIMENSIONS, start_encoder_server

ENGLISH = [
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street.",
    "Machine learning models can run on laptops.",
    "It's 2024 and we're testing embeddings!",
    "How do I reset my password?",
    "The weather is lovely today, isn't it?",
    "Paris is the capital of France.",
    "She sold seashells by the seashore.",
    "Quantum computers use qubits instead of bits.",
    "Don't forget the café's naïve résumé: 3.14 + 2 = 5.14 (roughly).",
]
CHINESE = [
    "今天天气很好，我们去公园散步吧。",
    "人工智能正在改变世界。",
    "北京是中国的首都。",
    "我喜欢吃苹果和香蕉。",
    "这个模型可以在笔记本电脑上运行。",
]
SPECIALS = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}


def fields(path: Path) -> dict:
    reader = GGUFReader(path)
    return {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def config_only(src: Path, dst: Path) -> Path:
    """The json files of a checkpoint without its weights: enough for errors raised before reading tensors."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors"))
    return dst


def edit_json(path: Path, **changes: object) -> None:
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture(scope="module")
def tiny_dirs(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Random tiny BERTs with MiniLM's tokenizer: an embedder (mean pooling) and a one-label cross-encoder."""
    root = tmp_path_factory.mktemp("bert")
    return {
        "embed": build_bert(root / "tiny-bert-embed", minilm_dir, seed=4),
        "rerank": build_bert(root / "tiny-bert-reranker", minilm_dir, rerank=True, seed=5),
    }


# ---- the file's contents ---------------------------------------------------------------------------
def test_minilm_metadata_and_vocabulary(minilm_gguf: Path, minilm_dir: Path) -> None:
    meta = fields(minilm_gguf)
    config = json.loads((minilm_dir / "config.json").read_text())
    assert meta["general.architecture"] == "bert"
    assert meta["bert.context_length"] == config["max_position_embeddings"] == MINILM_CONTEXT
    assert meta["bert.embedding_length"] == config["hidden_size"] == MINILM_DIMENSIONS
    assert meta["bert.block_count"] == config["num_hidden_layers"]
    assert meta["bert.feed_forward_length"] == config["intermediate_size"]
    assert meta["bert.attention.head_count"] == config["num_attention_heads"]
    assert meta["bert.attention.layer_norm_epsilon"] == pytest.approx(config["layer_norm_eps"])
    assert meta["bert.attention.causal"] is False
    assert meta["bert.pooling_type"] == POOLING_MEAN  # from 1_Pooling/config.json
    assert meta["tokenizer.ggml.token_type_count"] == config["type_vocab_size"]

    assert meta["tokenizer.ggml.model"] == "bert"
    assert meta["tokenizer.ggml.normalizer.lowercase"] is True  # an uncased model
    assert meta["tokenizer.ggml.normalizer.strip_accents"] is True  # BertNormalizer: None = as lowercase
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    vocab = json.loads((minilm_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert len(tokens) == len(types) == config["vocab_size"] == len(vocab)
    for text, token_id in vocab.items():
        if text in SPECIALS:
            assert (tokens[token_id], types[token_id]) == (text, TokenType.CONTROL)
        else:
            expected = text[2:] if text.startswith("##") else "\u2581" + text  # llama.cpp's phantom space
            assert (tokens[token_id], types[token_id]) == (expected, TokenType.NORMAL), text
    assert meta["tokenizer.ggml.bos_token_id"] == SPECIALS["[CLS]"]  # llama.cpp's BERT starts with BOS = CLS
    assert (
        meta["tokenizer.ggml.seperator_token_id"] == meta["tokenizer.ggml.eos_token_id"] == SPECIALS["[SEP]"]
    )
    assert meta["tokenizer.ggml.unknown_token_id"] == SPECIALS["[UNK]"]
    assert meta["tokenizer.ggml.padding_token_id"] == SPECIALS["[PAD]"]
    assert meta["tokenizer.ggml.mask_token_id"] == SPECIALS["[MASK]"]


def test_minilm_tensors(minilm_gguf: Path, minilm_dir: Path) -> None:
    types = {t.name: t.tensor_type for t in GGUFReader(minilm_gguf).tensors}
    assert set(types) >= read_config(minilm_dir).required_tensors()
    assert not any(name.startswith(("cls", "pooler")) for name in types)  # an embedder has no head
    f32 = {"position_embd.weight", "token_types.weight"}  # added to F32 activations by llama.cpp's graph
    for name, qtype in types.items():
        one_d = name.endswith((".bias", "norm.weight"))
        expected = GGMLQuantizationType.F32 if one_d or name in f32 else GGMLQuantizationType.F16
        assert qtype == expected, name


def test_minilm_registers_as_embedding_model(minilm_gguf: Path, tmp_path: Path) -> None:
    from qwendesk.models.folder import scan
    from tests.conftest import link_model

    reg = registration_for(read_gguf(minilm_gguf))
    assert (reg.kind, reg.embedding, reg.chat, reg.abilities) == ("embedding", True, False, ("embed",))
    assert (reg.dimensions, reg.pooling_type, reg.context_length) == (MINILM_DIMENSIONS, POOLING_MEAN, 512)
    link_model(minilm_gguf, tmp_path, "all-MiniLM-L6-v2-f16.gguf")
    (model,) = scan([tmp_path]).values()
    assert model.ok and model.registration.kind == "embedding", model.error


def test_f32_values_round_trip_and_pooler_is_dropped(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file

    hf = load_file(tiny_dirs["embed"] / "model.safetensors")
    out = convert_checkpoint(tiny_dirs["embed"], tmp_path / "tiny-f32.gguf", "f32").path
    tensors = {t.name: t for t in GGUFReader(out).tensors}
    for hf_name, gguf_name in [
        ("encoder.layer.1.attention.self.key.weight", "blk.1.attn_k.weight"),
        ("encoder.layer.0.intermediate.dense.bias", "blk.0.ffn_up.bias"),
        ("encoder.layer.1.output.LayerNorm.weight", "blk.1.layer_output_norm.weight"),
        ("embeddings.token_type_embeddings.weight", "token_types.weight"),
        ("embeddings.position_embeddings.weight", "position_embd.weight"),
    ]:
        got = np.asarray(tensors[gguf_name].data).reshape(hf[hf_name].shape)
        np.testing.assert_array_equal(got, hf[hf_name])
    assert "pooler.dense.weight" in hf and not any(n.startswith("cls") for n in tensors)


# ---- pooling and what cannot be converted ---------------------------------------------------------
def test_pooling_comes_from_sentence_transformers(minilm_dir: Path, tmp_path: Path) -> None:
    src = config_only(minilm_dir, tmp_path / "ckpt")
    assert read_config(src).pooling == POOLING_MEAN
    write_pooling(src, "pooling_mode_cls_token")
    assert read_config(src).pooling == POOLING_CLS
    (src / "modules.json").unlink()
    shutil.rmtree(src / "1_Pooling")
    cfg = read_config(src)
    assert cfg.pooling is None and "pool by mean" in cfg.warnings[0]
    write_pooling(src, "pooling_mode_max_tokens")
    with pytest.raises(ModelFileError, match="pools by max .*mean, CLS token or last token only"):
        read_config(src)
    write_pooling(src, "pooling_mode_mean_tokens", extra_modules=("Dense",))
    with pytest.raises(ModelFileError, match="Dense module.*llama.cpp cannot run"):
        read_config(src)


def test_unsupported_variants_are_refused_before_writing(minilm_dir: Path, tmp_path: Path) -> None:
    src = config_only(minilm_dir, tmp_path / "ckpt")
    out = tmp_path / "x.gguf"
    cases = [
        ({"hidden_act": "relu"}, "relu activation; llama.cpp's BERT runs GELU only"),
        ({"position_embedding_type": "relative_key"}, "relative_key position embeddings"),
        ({"architectures": ["XLMRobertaModel"]}, "XLMRobertaModel is not supported; .*BERT embedding models"),
        ({"architectures": ["BertForSequenceClassification"], "id2label": {"0": "a", "1": "b"}},
         "classifies into 2 labels; a reranker has one"),
    ]  # fmt: skip
    original = (src / "config.json").read_text()
    for changes, message in cases:
        (src / "config.json").write_text(original)
        edit_json(src / "config.json", **changes)
        with pytest.raises(ModelFileError, match=message):
            convert_checkpoint(src, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no output, no .part


def test_foreign_or_missing_tokenizer(minilm_dir: Path, tmp_path: Path) -> None:
    src = config_only(minilm_dir, tmp_path / "ckpt")
    tokenizer = json.loads((src / "tokenizer.json").read_text())
    (src / "tokenizer.json").unlink()
    with pytest.raises(ModelFileError, match="No tokenizer.json .*save_pretrained"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    for part, value, message in [
        ("model", {**tokenizer["model"], "type": "BPE"}, "holds a BPE tokenizer; BERT models use WordPiece"),
        ("pre_tokenizer", {"type": "Whitespace"}, "pre-tokenizer .* is not BERT's"),
        ("normalizer", {"type": "NFC"}, "normalizes text with NFC, not BERT's normalizer"),
    ]:
        (src / "tokenizer.json").write_text(json.dumps({**tokenizer, part: value}))
        with pytest.raises(ModelFileError, match=message):
            convert_checkpoint(src, tmp_path / "x.gguf")


def test_missing_and_corrupt_weights(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.numpy import load_file, save_file

    src = tmp_path / "ckpt"
    shutil.copytree(tiny_dirs["embed"], src)
    weights = src / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])  # a download cut in half
    with pytest.raises(ModelFileError, match="not a readable safetensors file .*Download it again"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    weights.write_bytes(data)
    tensors = load_file(weights)
    del tensors["encoder.layer.1.output.LayerNorm.bias"]
    save_file(tensors, str(weights))
    with pytest.raises(ModelFileError, match="lacks 1 tensor.*blk.1.layer_output_norm.bias"):
        convert_checkpoint(src, tmp_path / "x.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_cli_converts_an_embedder_into_the_models_folder(
    minilm_dir: Path, qwendesk_home: Path, capsys
) -> None:
    from qwendesk.daemon.cli import main
    from qwendesk.daemon.config import load_settings

    assert main(["convert", str(minilm_dir), "--quantize", "q8_0", "--quiet"]) == 0
    folder = load_settings().model_folders[0]
    assert [p.name for p in folder.iterdir()] == ["all-MiniLM-L6-v2-q8_0.gguf"]
    assert "ready to start and serve embeddings" in capsys.readouterr().out


# ---- served by llama.cpp ---------------------------------------------------------------------------
def served_embeddings(model: Path, texts: list[str]) -> tuple[np.ndarray, list[list[int]]]:
    """Vectors from llama.cpp's /v1/embeddings and token ids from its /tokenize (with [CLS] ... [SEP])."""
    import httpx

    server = start_encoder_server(model)
    reply = server.handle_embeddings({"input": texts})
    assert "data" in reply, reply
    vectors = np.array([d["embedding"] for d in sorted(reply["data"], key=lambda d: d["index"])])
    ids = [
        httpx.post(server.listening_address + "/tokenize", json={"content": t, "add_special": True}).json()[
            "tokens"
        ]
        for t in texts
    ]
    return vectors, ids


def reference_embeddings(minilm_dir: Path, texts: list[str]) -> np.ndarray:
    pytest.importorskip("sentence_transformers", reason="the reference is sentence-transformers (test extra)")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir), device="cpu").encode(texts)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.e2e
@pytest.mark.convert
def test_llama_cpp_embeds_like_sentence_transformers(
    minilm_gguf: Path, minilm_dir: Path, monkeypatch
) -> None:
    from transformers import AutoTokenizer

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    texts = ENGLISH + CHINESE
    got, ids = served_embeddings(minilm_gguf, texts)
    expected = reference_embeddings(minilm_dir, texts)
    assert got.shape == expected.shape == (len(texts), MINILM_DIMENSIONS)
    cos = cosines(got, expected)
    print(f"f16 cosine vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f}")
    assert cos.min() >= 0.99
    hf = AutoTokenizer.from_pretrained(minilm_dir)
    assert ids == [hf(t)["input_ids"] for t in texts]
    # the vectors carry meaning: a paraphrase is closer than an unrelated sentence
    q, para, other = served_embeddings(minilm_gguf, ["How do I change my password?", *texts[4:6]])[0]
    assert float(q @ para) > float(q @ other) + 0.2


@pytest.mark.e2e
@pytest.mark.convert
def test_quantized_q8_0_still_embeds(
    minilm_gguf: Path, minilm_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    pytest.importorskip("llama_cpp", reason="quantize needs qwendesk[convert]")
    from qwendesk.models.quantize import quantize_gguf

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = quantize_gguf(minilm_gguf, tmp_path / "all-MiniLM-L6-v2-q8_0.gguf", "q8_0")
    types = {t.name: t.tensor_type for t in GGUFReader(out).tensors}
    assert types["blk.0.attn_q.weight"] == types["blk.5.ffn_down.weight"] == GGMLQuantizationType.Q8_0
    assert registration_for(read_gguf(out)).kind == "embedding"
    texts = ENGLISH + CHINESE
    cos = cosines(served_embeddings(out, texts)[0], reference_embeddings(minilm_dir, texts))
    print(f"q8_0 cosine vs sentence-transformers: min {cos.min():.6f}, mean {cos.mean():.6f}")
    assert cos.min() >= 0.99


PAIRS_QUERY = "what is a panda?"
PAIRS_DOCS = [
    "The giant panda is a bear native to China.",
    "hi",
    "Paris is the capital of France.",
    "熊猫是熊。",
]


@pytest.mark.e2e
@pytest.mark.convert
def test_cross_encoder_scores_match_transformers(tiny_dirs: dict[str, Path], tmp_path: Path) -> None:
    """A BertForSequenceClassification becomes a GGUF llama.cpp serves at /v1/rerank with transformers' scores."""
    import httpx
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    out = convert_checkpoint(tiny_dirs["rerank"], tmp_path / "tiny-bert-reranker-f32.gguf", "f32")
    assert out.kind == "rerank"
    meta = fields(out.path)
    assert meta["bert.pooling_type"] == POOLING_RANK and meta["bert.classifier.output_labels"] == ["LABEL_0"]
    reg = registration_for(read_gguf(out.path))
    assert (reg.kind, reg.abilities, reg.pooling_type) == ("rerank", ("rerank",), POOLING_RANK)

    server = start_encoder_server(out.path, rerank=True, n_ctx=128)
    reply = httpx.post(
        server.listening_address + "/v1/rerank",
        json={"query": PAIRS_QUERY, "documents": PAIRS_DOCS},
        timeout=60,
    ).json()
    got = {r["index"]: r["relevance_score"] for r in reply["results"]}

    tokenizer = AutoTokenizer.from_pretrained(tiny_dirs["rerank"])
    model = BertForSequenceClassification.from_pretrained(tiny_dirs["rerank"]).eval()
    batch = tokenizer([PAIRS_QUERY] * len(PAIRS_DOCS), PAIRS_DOCS, padding=True, return_tensors="pt")
    # llama.cpp feeds every token as segment 0 (its BERT graph hardcodes token type 0), so compare like for like
    with torch.no_grad():
        expected = model(**{**batch, "token_type_ids": torch.zeros_like(batch["input_ids"])}).logits[:, 0]
    scores, wanted = np.array([got[i] for i in range(len(PAIRS_DOCS))]), expected.numpy()
    print("llama.cpp", scores.round(5).tolist(), "transformers", wanted.round(5).tolist())
    assert np.ptp(wanted) > 0.01  # the documents score differently, so a mix-up in the head would show
    # measured: max |diff| 1.3e-3 (llama.cpp's GELU is the tanh form, transformers' the erf form)
    np.testing.assert_allclose(scores, wanted, atol=5e-3)
    assert [r["index"] for r in reply["results"]] == list(np.argsort(-scores))  # best first
