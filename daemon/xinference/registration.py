"""What Xinference is told about a model: the custom-model JSON it is registered with, and its model type.

The JSON follows notes/xinference.md §1; nothing here talks to Xinference.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from qwendesk.models.errors import ModelFileError
from qwendesk.models.families import Registration
from qwendesk.models.folder import SPLIT_RE, ModelFiles
from qwendesk.models.gguf_info import GGUFInfo


@lru_cache(maxsize=1)
def reserved_names() -> frozenset[str]:
    """Xinference's built-in LLM, embedding and rerank names: registering one of them again is refused (400)."""
    spec = importlib.util.find_spec("xinference")  # locates the package without importing it
    if not spec or not spec.submodule_search_locations:
        return frozenset()
    names = set()
    root = Path(next(iter(spec.submodule_search_locations))) / "model"
    for f in [p for kind in ("llm", "embedding", "rerank") for p in (root / kind / "models").glob("*.json")]:
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for obj in data if isinstance(data, list) else [data]:
            if isinstance(obj, dict) and isinstance(obj.get("model_name"), str):
                names.add(obj["model_name"].lower())
    return frozenset(names)


def size_in_billions(info: GGUFInfo) -> int | str:
    """Xinference's size field: an int, or an underscore string like "0_5" (a float is refused)."""
    billions = info.parameter_count / 1e9
    if billions >= 10:
        return round(billions)
    text = f"{billions:.3g}" if billions >= 0.001 else f"{billions:.6f}".rstrip("0")
    if "e" in text:
        text = f"{billions:.6f}".rstrip("0")
    if "." not in text:
        return int(text)
    whole, frac = text.split(".")
    return f"{whole}_{frac}" if frac.strip("0") else int(whole)


def _escape(template: str) -> str:
    """Xinference calls str.format on file templates: braces in file names must be doubled."""
    return template.replace("{", "{{").replace("}", "}}")


def _part(path: Path) -> str:
    m = SPLIT_RE.match(path.name)
    assert m is not None
    return f"{m['no']}-of-{m['count']}"


def model_type(model: ModelFiles) -> str:
    """Xinference's model type for a registrable model: "embedding", "rerank" or "LLM" (its URL spelling)."""
    reg = model.registration
    kind = reg.kind if reg is not None else "chat"
    return kind if kind in ("embedding", "rerank") else "LLM"


def _file_spec(model: ModelFiles, info: GGUFInfo) -> dict[str, Any]:
    """The model_specs entry both kinds share: format, quantization, file name(s), folder."""
    spec: dict[str, Any] = {
        "model_format": "ggufv2",
        "quantization": info.quantization,
        "model_file_name_template": _escape(model.file.name),
        "model_uri": str(model.folder),
    }
    if len(model.files) > 1:
        base = SPLIT_RE.match(model.file.name)
        assert base is not None  # grouped by SPLIT_RE
        suffix = model.file.name.rsplit(".", 1)[1]
        spec["model_file_name_split_template"] = f"{_escape(base['base'])}-{{part}}.{suffix}"
        spec["quantization_parts"] = {info.quantization: [_part(f) for f in model.files]}
    return spec


def registration_spec(model: ModelFiles) -> dict[str, Any]:
    """The custom-model JSON for POST /v1/model_registrations/{model_type(model)} (notes/xinference.md §1)."""
    if not model.ok or model.info is None or model.registration is None:
        raise ModelFileError(
            f"Model '{model.name}' cannot be registered: {model.error or 'still being copied'}"
        )
    reg, info = model.registration, model.info
    if reg.kind == "embedding":
        return _embedding_spec(model, info, reg)
    if reg.kind == "rerank":
        return _rerank_spec(model, info, reg)
    spec = {"model_size_in_billions": size_in_billions(info), **_file_spec(model, info)}
    if model.mmproj:
        spec["multimodal_projectors"] = [model.mmproj.name]
    family: dict[str, Any] = {
        "version": 2,
        "model_name": model.name,
        "model_lang": ["en", "zh"],
        "model_ability": list(reg.abilities),
        "model_family": reg.model_family,
        "context_length": reg.context_length,
        "model_description": f"{info.name or model.file.name} ({info.size_label or '?'}, {info.quantization})",
        "model_specs": [spec],
    }
    if reg.chat_template is not None:  # always explicit for chat models: see families.py
        family["chat_template"] = reg.chat_template
    return family


def _embedding_spec(model: ModelFiles, info: GGUFInfo, reg: Registration) -> dict[str, Any]:
    """A custom embedding model (`xinference/model/embedding/core.py` EmbeddingModelFamilyV2)."""
    return {
        "version": 2,
        "model_name": model.name,
        "dimensions": reg.dimensions,
        "max_tokens": reg.context_length,
        "language": ["en", "zh"],
        "model_description": f"{info.name or model.file.name} ({info.size_label or '?'}, {info.quantization})",
        "model_specs": [_file_spec(model, info)],
    }


def _rerank_spec(model: ModelFiles, info: GGUFInfo, reg: Registration) -> dict[str, Any]:
    """A custom rerank model (`xinference/model/rerank/core.py` RerankModelFamilyV2); Xinference serves a
    ggufv2 spec only with its llama.cpp engine (`rerank/llama_cpp/core.py`, rank pooling).

    `type` is stated: left "unknown", the launch guesses it by loading a Hugging Face tokenizer from the
    model's folder, which a GGUF folder does not have (the launch fails). Only its sentence-transformers
    engine reads it.
    """
    return {
        "version": 2,
        "model_name": model.name,
        "type": "normal",
        "language": ["en", "zh"],
        "max_tokens": reg.context_length,
        "model_description": f"{info.name or model.file.name} ({info.size_label or '?'}, {info.quantization})",
        "model_specs": [_file_spec(model, info)],
    }
