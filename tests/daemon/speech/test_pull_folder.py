"""A faster-whisper release pulled from a (local) hub lands as a model folder the speech scan finds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.speech.models import find_speech_models
from qwendesk.models import download
from qwendesk.models.catalog import BadCatalog, Catalog, parse_catalog
from qwendesk.models.download import pull
from qwendesk.models.folder import scan

REPO = "Systran/faster-whisper-tiny.en"
FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")  # model.bin first: the main file


@pytest.fixture
def settings(hub_server, monkeypatch):
    monkeypatch.setenv("QWENDESK_HUGGINGFACE_ENDPOINT", hub_server.url)
    monkeypatch.setenv("QWENDESK_CATALOG_SOURCE", "huggingface")
    return load_settings()


def speech_entry(hub_server, source: Path, folder: str = "faster-whisper-tiny.en") -> dict:
    """The real tiny.en files published on the hub, and a catalog entry shaped like the built-in ones."""
    files = []
    for name in FILES:
        content = (source / name).read_bytes()
        hub_server.add(REPO, name, content)
        files.append({"file": name, "size": None, "sha256": None, "approx_size": len(content)})
    return {
        "name": "faster-whisper:tiny.en",
        "kind": "speech",
        "repos": {"huggingface": REPO, "modelscope": None},
        "folder": folder,
        "default": "f16",
        "quantizations": {"f16": {"size": sum(f["approx_size"] for f in files), "files": files}},
    }


def test_a_speech_release_lands_in_its_folder_model_bin_last(
    hub_server, settings, whisper_tiny_en: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: list[str] = []
    real_replace = os.replace
    monkeypatch.setattr(
        download.os, "replace", lambda a, b: (renamed.append(Path(b).name), real_replace(a, b))
    )
    catalog = Catalog(parse_catalog({"models": [speech_entry(hub_server, whisper_tiny_en)]}))

    result = pull("faster-whisper:tiny.en", settings, catalog=catalog)

    models = settings.model_folders[0]
    folder = models / "faster-whisper-tiny.en"
    assert result.path == folder / "model.bin" and result.release.folder == folder.name
    assert sorted(p.name for p in models.iterdir()) == [folder.name]
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)  # no .part, no lock left behind
    assert all((folder / f).read_bytes() == (whisper_tiny_en / f).read_bytes() for f in FILES)
    assert renamed[-1] == "model.bin"  # the scan sees a model only once all its files are there
    found = find_speech_models([models])
    assert list(found) == ["faster-whisper-tiny.en"] and found["faster-whisper-tiny.en"].ok
    assert scan([models]) == {}  # nothing for the GGUF scan
    again = pull("faster-whisper:tiny.en", settings, catalog=catalog)
    assert again.already_present


def test_a_folder_name_that_leaves_the_models_folder_is_refused(
    hub_server, settings, whisper_tiny_en: Path
) -> None:
    catalog = Catalog(
        parse_catalog({"models": [speech_entry(hub_server, whisper_tiny_en, folder="../elsewhere")]})
    )
    with pytest.raises(BadCatalog, match="not a plain file name"):
        pull("faster-whisper:tiny.en", settings, catalog=catalog)
    assert not (settings.model_folders[0].parent / "elsewhere").exists()
