"""Finding Whisper (CTranslate2) model folders in the models folders: names, languages, broken folders."""

from __future__ import annotations

import json
import os
import shutil
import struct
import time
from pathlib import Path

import pytest

from qwendesk.daemon.speech.models import (
    find_speech_models,
    read_speech_model,
    spec_name,
    speech_model_name,
)

LANGS = ["en", "zh", "de", "es", "haw", "yue"]
WHISPER_CONFIG = {
    "alignment_heads": [[1, 0]],
    "lang_ids": [50259],
    "suppress_ids": [1],
    "suppress_ids_begin": [220],
}


def model_bin(spec: str = "WhisperSpec", version: int = 6) -> bytes:
    name = spec.encode() + b"\0"
    return struct.pack("<IH", version, len(name)) + name + b"\x00" * 256


def vocabulary(multilingual: bool) -> list[str]:
    """A vocabulary shaped like Whisper's: 51864 tokens English-only, 51865 and language tokens multilingual."""
    tokens = [f"t{i}" for i in range(50257)]
    tokens += ["<|endoftext|>", "<|startoftranscript|>"]
    if multilingual:
        tokens += [f"<|{code}|>" for code in LANGS]
    else:
        tokens += ["<|en|>", "<|zh|>"]  # English-only vocabularies hold language tokens too
    tokens += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|notimestamps|>"]
    size = 51865 if multilingual else 51864
    tokens += [f"<|{i * 0.02:.2f}|>" for i in range(size - len(tokens))]
    return tokens


def make_model(folder: Path, *, multilingual: bool = False, json_vocab: bool = False, skip: tuple[str, ...] = ()
) -> Path:  # fmt: skip
    folder.mkdir(parents=True)
    files = {
        "model.bin": model_bin(),
        "config.json": json.dumps(WHISPER_CONFIG).encode(),
        "tokenizer.json": b'{"version": "1.0"}',
    }
    tokens = vocabulary(multilingual)
    if json_vocab:
        files["vocabulary.json"] = json.dumps(tokens).encode()
    else:
        files["vocabulary.txt"] = "\n".join(tokens).encode()
    for name, data in files.items():
        if name not in skip:
            (folder / name).write_bytes(data)
    return folder


def settled() -> float:
    """A `now` well after every file was written (so broken folders are not taken as still copying)."""
    return time.time() + 3600


def test_real_tiny_en_folder(whisper_tiny_en: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    folder = models / "whisper-tiny.en"
    folder.mkdir(parents=True)
    for f in whisper_tiny_en.iterdir():
        try:
            os.link(f, folder / f.name)  # a hard link: no copy, and not a link out of the models folder
        except OSError:
            shutil.copyfile(f, folder / f.name)
    found = find_speech_models([models], now=settled())
    m = found["whisper-tiny.en"]
    assert m.ok, m.error
    assert m.english_only and m.languages == ["en"] and not m.can_translate
    assert m.vocabulary_size == 51864
    assert 70e6 < m.size_bytes < 90e6
    assert spec_name(folder / "model.bin") == "WhisperSpec"


def test_english_only_model(tmp_path: Path) -> None:
    make_model(tmp_path / "models" / "faster-whisper-base.en")
    [m] = find_speech_models([tmp_path / "models"]).values()
    assert m.name == "faster-whisper-base.en" and m.ok
    assert m.languages == ["en"] and m.english_only and not m.can_translate
    view = m.view_fields()
    assert view["kind"] == "speech" and view["abilities"] == ["transcribe"] and view["error"] is None
    assert view["file"] == str((tmp_path / "models" / "faster-whisper-base.en").resolve())
    assert m.estimated_memory(60) == m.size_bytes + (256 + 50) * 2**20
    assert m.estimated_memory() > m.estimated_memory(60)


@pytest.mark.parametrize("json_vocab", [False, True], ids=["vocabulary.txt", "vocabulary.json"])
def test_multilingual_model_lists_languages_and_translates(tmp_path: Path, json_vocab: bool) -> None:
    make_model(tmp_path / "models" / "whisper-small", multilingual=True, json_vocab=json_vocab)
    [m] = find_speech_models([tmp_path / "models"]).values()
    assert m.ok and m.languages == LANGS and not m.english_only and m.can_translate
    assert m.view_fields()["abilities"] == ["transcribe", "translate"]


def test_one_level_down_is_found_two_levels_down_is_not(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model(models / "Systran" / "faster-whisper-tiny")
    make_model(models / "a" / "b" / "too-deep")
    make_model(models / ".hidden")
    assert list(find_speech_models([models])) == ["faster-whisper-tiny"]


def test_other_folders_are_not_speech_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    (models / "qwen").mkdir(parents=True)
    (models / "qwen" / "qwen2.5-0.5b-q4_k_m.gguf").write_bytes(b"GGUF")
    (models / "hf-model").mkdir()
    (models / "hf-model" / "config.json").write_text('{"architectures": ["BertModel"]}')
    (models / "hf-model" / "model.bin").write_bytes(b"PK\x03\x04 a torch zip")
    (models / "opus-mt").mkdir()
    (models / "opus-mt" / "model.bin").write_bytes(model_bin("TransformerSpec"))
    (models / "opus-mt" / "config.json").write_text('{"add_source_bos": false}')
    assert find_speech_models([models]) == {}


@pytest.mark.parametrize(
    ("skip", "expected"),
    [
        (("tokenizer.json",), "no tokenizer.json"),
        (("model.bin",), "no model.bin"),
        (("vocabulary.txt",), "no vocabulary"),
    ],
)
def test_missing_files_are_named(tmp_path: Path, skip: tuple[str, ...], expected: str) -> None:
    make_model(tmp_path / "models" / "whisper-base", skip=skip)
    models = find_speech_models([tmp_path / "models"], now=settled())
    m = models["whisper-base"]
    assert not m.ok and expected in (m.error or "")
    assert not m.pending
    assert m.view_fields()["error"] == m.error


def test_truncated_model_bin(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "models" / "whisper-base")
    (folder / "model.bin").write_bytes(model_bin()[:5])
    m = read_speech_model(folder, now=settled())
    assert "not a CTranslate2 model" in (m.error or "")


def test_bad_config_and_vocabulary(tmp_path: Path) -> None:
    folder = make_model(tmp_path / "models" / "whisper-base")
    (folder / "config.json").write_text("{not json")
    assert "config.json" in (read_speech_model(folder, now=settled()).error or "")
    folder2 = make_model(tmp_path / "models" / "whisper-base-2", json_vocab=True)
    (folder2 / "vocabulary.json").write_text("[")
    assert "vocabulary.json cannot be read" in (read_speech_model(folder2, now=settled()).error or "")


def test_broken_folder_being_copied_is_pending(tmp_path: Path) -> None:
    make_model(tmp_path / "models" / "whisper-base", skip=("tokenizer.json",))
    [m] = find_speech_models([tmp_path / "models"]).values()  # just written: still being copied
    assert m.pending and not m.ok
    assert m.view_fields()["error"] == m.error


def test_links_outside_the_models_folders_are_refused(tmp_path: Path) -> None:
    elsewhere = make_model(tmp_path / "elsewhere" / "whisper-base")
    folder = tmp_path / "models" / "whisper-base"
    folder.mkdir(parents=True)
    for f in elsewhere.iterdir():
        (folder / f.name).symlink_to(f)
    [m] = find_speech_models([tmp_path / "models"], now=settled()).values()
    assert "outside the models folders" in (m.error or "")


def test_names_follow_the_gguf_rule_and_never_collide(tmp_path: Path) -> None:
    models = tmp_path / "models"
    make_model(models / "Whisper Tiny.EN")
    make_model(models / "group" / "whisper-tiny.en")
    found = find_speech_models([models], taken={"qwen2.5-0.5b"})
    assert sorted(found) == ["whisper-tiny.en", "whisper-tiny.en-2"]
    assert speech_model_name(Path("whisper-tiny.en"), taken={"whisper-tiny.en"}) == "whisper-tiny.en-2"
    assert speech_model_name(Path("Ünïcode Whisper")) == "unicode-whisper"
