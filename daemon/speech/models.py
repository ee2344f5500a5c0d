"""Whisper models on disk: CTranslate2 folders (as faster-whisper loads them) found in the models folders.

A model is a folder holding `model.bin` (a CTranslate2 WhisperSpec), `config.json`, `vocabulary.txt` or
`vocabulary.json`, and `tokenizer.json` (without it faster-whisper downloads one from the hub). It sits
directly in a models folder or one level down (`<folder>/<group>/<model>/model.bin`), like GGUF files do.
Only a few bytes of each file are read: nothing here imports faster-whisper or CTranslate2.
"""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The GGUF naming rule, shared so every model of the catalog is named alike.
from qwendesk.models.folder import model_name_for

from .limits import DEFAULT_MAX_SECONDS, MIB_PER_AUDIO_MINUTE, WORKER_BASE_MIB

PENDING_SECONDS = 10.0  # a broken folder touched this recently is probably still being copied
SPEC_NAME = b"WhisperSpec"
# CTranslate2's own test (whisper.cc): English-only Whisper vocabularies have 51864 tokens, multilingual ones more.
MULTILINGUAL_VOCABULARY = 51865
CONFIG_KEYS = ("suppress_ids", "suppress_ids_begin", "lang_ids", "alignment_heads")
VOCABULARY_FILES = ("vocabulary.json", "vocabulary.txt")
_LANGUAGE_TOKEN = re.compile(r"<\|([a-z]{2,3})\|>")


@dataclass
class SpeechModel:
    """One Whisper model folder: what it can do, or why it cannot be used (`error`)."""

    name: str
    folder: Path
    size_bytes: int = 0
    mtime: float = 0.0
    vocabulary_size: int = 0
    languages: list[str] = field(default_factory=list)
    can_translate: bool = False
    error: str | None = None
    pending: bool = False  # still being copied: re-checked on the next scan

    # What a GGUF model's files (models.folder.ModelFiles) carry and a Whisper folder has not: code that looks
    # at any model in the table (tool calls, the Ollama listing) finds None here rather than failing.
    info = None
    registration = None
    mmproj = None

    @property
    def ok(self) -> bool:
        return self.error is None and not self.pending

    @property
    def english_only(self) -> bool:
        return self.languages == ["en"]

    def estimated_memory(self, max_seconds: float = DEFAULT_MAX_SECONDS) -> int:
        """Bytes the worker may need: the weights (int8 on CPU is at most their size on disk), its base RSS, and
        the spectrogram of the longest audio it accepts."""
        return self.size_bytes + int((WORKER_BASE_MIB + MIB_PER_AUDIO_MINUTE * max_seconds / 60) * 2**20)

    def fingerprint(self) -> tuple:
        """Changes whenever the folder's files change: the manager reloads the model when this differs."""
        return (str(self.folder), self.size_bytes, self.mtime, self.error, self.pending)

    def view_fields(self) -> dict[str, Any]:
        """The catalog fields this scan knows (state comes from the manager)."""
        return {
            "name": self.name,
            "kind": "speech",
            "format": "ctranslate2",
            "architecture": "whisper",
            "file": str(self.folder),
            "size_bytes": self.size_bytes,
            "languages": list(self.languages),
            "can_translate": self.can_translate,
            "abilities": ["transcribe", *(["translate"] if self.can_translate else [])],
            "error": self.error or ("still being copied" if self.pending else None),
        }


# ---- names ---------------------------------------------------------------------------------------
def speech_model_name(folder: Path, taken: Collection[str] = ()) -> str:
    """The folder's name by the GGUF naming rule, numbered (`-2`, `-3`) past names in `taken`."""
    base = model_name_for(folder.name)
    name, n = base, 2
    while name in taken:
        name, n = f"{base}-{n}", n + 1
    return name


# ---- recognising a folder ------------------------------------------------------------------------
def spec_name(model_bin: Path) -> str | None:
    """The spec a CTranslate2 `model.bin` declares (e.g. "WhisperSpec"); None when it is not one.

    The file starts with a uint32 format version, then the spec name as a uint16 length and NUL-ended bytes.
    """
    try:
        with model_bin.open("rb") as f:
            head = f.read(4 + 2 + 64)
    except OSError:
        return None
    if len(head) < 7:
        return None
    version, length = struct.unpack_from("<IH", head)
    raw = head[6 : 6 + length]
    if not 1 <= version <= 100 or not 1 <= length <= 64 or len(raw) != length:
        return None
    name = raw.rstrip(b"\0")
    return name.decode("ascii") if name.isascii() and name.replace(b"_", b"").isalnum() else None


def _whisper_config(folder: Path) -> dict | None:
    """config.json when it is a CTranslate2 Whisper config, else None."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and any(k in config for k in CONFIG_KEYS) else None


def looks_like_speech_model(folder: Path) -> bool:
    """Cheap test for a folder meant as a Whisper model: a WhisperSpec model.bin, or a Whisper config.json."""
    model_bin = folder / "model.bin"
    if model_bin.is_file() and (spec_name(model_bin) or "").startswith("Whisper"):
        return True
    return _whisper_config(folder) is not None


def read_speech_model(folder: Path, name: str = "", *, roots: Collection[Path] = (), now: float | None = None
) -> SpeechModel:  # fmt: skip
    """The model in `folder`, never raising: a broken folder comes back with `error` set (and what to do)."""
    now = time.time() if now is None else now
    model = SpeechModel(name=name or speech_model_name(folder), folder=folder)
    model.size_bytes, model.mtime = _size_and_mtime(folder)
    model.error = _problem(folder, roots)
    if model.error is None:
        vocabulary = _read_vocabulary(folder)
        if isinstance(vocabulary, str):
            model.error = vocabulary
        else:
            model.vocabulary_size = len(vocabulary)
            if len(vocabulary) >= MULTILINGUAL_VOCABULARY:
                model.languages = _language_codes(vocabulary)
                model.can_translate = "<|translate|>" in vocabulary
            else:
                model.languages = ["en"]
    if model.error is not None:
        model.pending = now - model.mtime < PENDING_SECONDS
    return model


def _problem(folder: Path, roots: Collection[Path]) -> str | None:
    """What is wrong with the folder's files, with what to do; None when all are there."""
    for file in ("model.bin", "config.json", "tokenizer.json"):
        path = folder / file
        if roots and path.exists():
            target = path.resolve()
            if not any(r in target.parents for r in roots):
                return (
                    f"{folder.name}/{file} links to {target}, outside the models folders; move the files in."
                )
        if not path.is_file():
            hint = (
                "faster-whisper would download it from the hub; copy it from the model's repository"
                if file == "tokenizer.json"
                else "copy the complete model folder (model.bin, config.json, vocabulary, tokenizer.json)"
            )
            return f"{folder.name} has no {file}: {hint}."
    spec = spec_name(folder / "model.bin")
    if spec is None:
        return f"{folder.name}/model.bin is not a CTranslate2 model (or is truncated); copy it again."
    if not spec.startswith("Whisper"):
        return f"{folder.name}/model.bin holds a CTranslate2 {spec}, not a Whisper model."
    if _whisper_config(folder) is None:
        return f"{folder.name}/config.json is not a CTranslate2 Whisper config; copy it again from the model."
    return None


def _read_vocabulary(folder: Path) -> list[str] | str:
    """The tokens in CTranslate2's vocabulary file (one per line, or a JSON list), or what is wrong."""
    for file in VOCABULARY_FILES:
        path = folder / file
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
            tokens = json.loads(text) if file.endswith(".json") else text.splitlines()
        except (OSError, ValueError) as exc:
            return f"{folder.name}/{file} cannot be read ({exc}); copy it again."
        if not isinstance(tokens, list) or not tokens:
            return f"{folder.name}/{file} holds no tokens; copy it again."
        return [str(t) for t in tokens]
    return f"{folder.name} has no vocabulary.txt or vocabulary.json: copy the complete model folder."


def _language_codes(vocabulary: list[str]) -> list[str]:
    """The language tokens (`<|en|>`, `<|haw|>`, ...) that come before `<|translate|>`, in vocabulary order."""
    end = vocabulary.index("<|translate|>") if "<|translate|>" in vocabulary else len(vocabulary)
    start = vocabulary.index("<|startoftranscript|>") if "<|startoftranscript|>" in vocabulary else 0
    return [m[1] for t in vocabulary[start:end] if (m := _LANGUAGE_TOKEN.fullmatch(t))]


def _size_and_mtime(folder: Path) -> tuple[int, float]:
    """Total bytes of the folder's files (links followed) and the newest modification time."""
    size, mtime = 0, 0.0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0, 0.0
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue
        if entry.is_file():
            size += st.st_size
            mtime = max(mtime, st.st_mtime)
    return size, mtime


# ---- scanning ------------------------------------------------------------------------------------
def _candidate_folders(root: Path) -> list[Path]:
    """Folders in `root` and one level below that look like Whisper models (hidden entries skipped)."""
    found: list[Path] = []
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        if looks_like_speech_model(entry):
            found.append(entry)
        elif not entry.is_symlink():
            try:
                subs = sorted(entry.iterdir())
            except OSError:
                continue
            found += [
                s for s in subs if not s.name.startswith(".") and s.is_dir() and looks_like_speech_model(s)
            ]
    return found


def find_speech_models(
    folders: list[Path], *, taken: Collection[str] = (), now: float | None = None
) -> dict[str, SpeechModel]:
    """Every Whisper model folder in `folders`, by unique name (none of `taken`, e.g. the GGUF models' names)."""
    now = time.time() if now is None else now
    roots = [Path(f).resolve() for f in folders]
    result: dict[str, SpeechModel] = {}
    used = set(taken)
    for root in roots:
        for folder in _candidate_folders(root):
            name = speech_model_name(folder, used)
            used.add(name)
            result[name] = read_speech_model(folder, name, roots=roots, now=now)
    return result
