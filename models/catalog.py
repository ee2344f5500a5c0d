"""The catalog of GGUF releases (Qwen chat and vision models, embedders, rerankers) and of faster-whisper
speech models: names like `qwen2.5:1.5b-instruct-q4_k_m`, their hub files and sizes, and the default model of
each kind. A release with a `folder` (a faster-whisper model: model.bin, config.json, ...) lands in that
sub-folder of the models folder, as the speech scan expects."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import BadRequest, NotFound
from .files import human_size  # noqa: F401  (re-exported: part of the catalog listing API)

SOURCES = ("modelscope", "huggingface")
# Kinds a catalog names a default model for: served at /v1/embeddings, at /v1/rerank, chat with images (its
# mmproj comes along), speech to text. Other entries are "chat" or "code" (a label for the listing).
DEFAULT_KINDS = ("embedding", "rerank", "vision", "speech")
# Rough overhead of llama.cpp over the file size (compute buffers, mmap'd tokenizer, runtime).
MEMORY_OVERHEAD = 1.2
KV_BYTES_PER_VALUE = 2  # llama.cpp keeps the KV cache in f16 by default


class CatalogError(NotFound):
    """A catalog name that does not resolve."""

    code = "not_in_catalog"


class BadCatalog(BadRequest):
    """A catalog file that cannot be read, or a source that does not exist."""

    code = "bad_catalog"


@dataclass(frozen=True)
class HubFile:
    """One file on the hub; `size`/`sha256` are None when no public source gives them."""

    file: str
    size: int | None = None
    sha256: str | None = None
    role: str = "model"  # "model" (single file or a shard) or "mmproj" (the vision projector a model needs)
    approx_size: int | None = None


@dataclass(frozen=True)
class Arch:
    """What the KV-cache estimate needs."""

    layers: int
    kv_heads: int
    head_dim: int
    context_length: int
    kv_cache: bool = True  # False for encoders (BERT, XLM-RoBERTa): llama.cpp gives them no KV cache


@dataclass(frozen=True)
class Quant:
    key: str
    size: int  # approximate bytes of the model files (hub listing)
    files: tuple[HubFile, ...]


@dataclass(frozen=True)
class CatalogModel:
    """A model in all its quantizations, e.g. `qwen2.5:1.5b-instruct`."""

    name: str
    title: str
    kind: str
    repos: Mapping[str, str | None]
    arch: Arch
    default: str
    quants: Mapping[str, Quant]
    extra_files: tuple[HubFile, ...] = ()
    notes: str = ""
    folder: str | None = None  # the release's files go into this sub-folder of the models folder

    def repo(self, source: str) -> str:
        """The repository id on `source`, falling back to the other hub when this one has no mirror."""
        repo = self.repos.get(source) or next((r for r in self.repos.values() if r), None)
        if not repo:
            raise CatalogError(f"{self.name} has no repository on any hub in the catalog.")
        return repo


@dataclass(frozen=True)
class Release:
    """One pullable thing: a model at one quantization, with its extra files (e.g. the mmproj)."""

    model: CatalogModel
    quant: Quant

    @property
    def name(self) -> str:
        return f"{self.model.name}-{self.quant.key}"

    @property
    def is_default(self) -> bool:
        return self.quant.key == self.model.default

    @property
    def files(self) -> tuple[HubFile, ...]:
        """Extras first, then the model's shards in order (the first shard is the model file)."""
        return self.model.extra_files + self.quant.files

    @property
    def folder(self) -> str | None:
        """The sub-folder of the models folder the files land in (None: directly in it)."""
        return self.model.folder

    @property
    def main_file(self) -> str:
        """The file the models folder scan and llama.cpp are pointed at (the first shard of a split model)."""
        return self.quant.files[0].file

    @property
    def size(self) -> int:
        """Approximate download size in bytes, extras included."""
        extras = sum(f.size or f.approx_size or 0 for f in self.model.extra_files)
        return self.quant.size + extras


def _hub_file(data: Mapping[str, Any], role: str = "model") -> HubFile:
    sha = data.get("sha256")
    return HubFile(
        file=data["file"],
        size=data.get("size"),
        sha256=sha.lower() if sha else None,
        role=data.get("role", role),
        approx_size=data.get("approx_size"),
    )


def _model(data: Mapping[str, Any]) -> CatalogModel:
    quants = {
        key.lower(): Quant(key.lower(), int(q["size"]), tuple(_hub_file(f) for f in q["files"]))
        for key, q in data["quantizations"].items()
    }
    default = data.get("default", "q4_k_m").lower()
    if default not in quants:
        raise KeyError(f"default quantization {default!r} of {data['name']} is not listed")
    return CatalogModel(
        name=data["name"].lower(),
        title=data.get("title") or data["name"],
        kind=data.get("kind", "chat"),
        repos=dict(data["repos"]),
        # Speech models have no KV cache to estimate: no arch.
        arch=Arch(**data["arch"]) if "arch" in data else Arch(0, 0, 0, 0, kv_cache=False),
        default=default,
        quants=quants,
        extra_files=tuple(_hub_file(f, "mmproj") for f in data.get("extra_files", [])),
        notes=data.get("notes", ""),
        folder=data.get("folder"),
    )


class Catalog:
    """All catalog models; resolves user-typed names to a Release."""

    def __init__(self, models: list[CatalogModel], defaults: Mapping[str, str] | None = None) -> None:
        self.models = {m.name: m for m in models}
        self.defaults = {kind: name.lower() for kind, name in (defaults or {}).items()}
        for kind, name in self.defaults.items():
            if kind not in DEFAULT_KINDS or self.models.get(name) is None or self.models[name].kind != kind:
                raise BadCatalog(f"The catalog's default {kind} model {name!r} is not a {kind} model in it.")

    def default_for(self, kind: str) -> Release:
        """The release pulled when a feature needs a model of `kind` ("embedding", "rerank", "vision")."""
        name = self.defaults.get(kind)
        if name is None:
            raise CatalogError(
                f"The catalog names no default {kind} model; pull one by name (`qwendesk catalog`)."
            )
        model = self.models[name]
        return Release(model, model.quants[model.default])

    def releases(self) -> Iterator[Release]:
        for model in self.models.values():
            for quant in model.quants.values():
                yield Release(model, quant)

    def resolve(self, name: str) -> Release:
        """`qwen2.5:1.5b-instruct-q4_k_m`, `qwen2.5:1.5b-instruct` (default quant) or a unique prefix like `qwen2.5:1.5b`."""
        wanted = name.strip().lower()
        exact = {r.name: r for r in self.releases()}
        if wanted in exact:
            return exact[wanted]
        if wanted in self.models:
            model = self.models[wanted]
            return Release(model, model.quants[model.default])
        prefixed = [m for m in self.models.values() if m.name.startswith(wanted + "-") or m.name == wanted]
        if len(prefixed) == 1:
            return Release(prefixed[0], prefixed[0].quants[prefixed[0].default])
        base, _, quant = wanted.rpartition("-")
        if base in self.models:
            model = self.models[base]
            raise CatalogError(
                f"{model.name} has no quantization {quant!r} in the catalog; available: "
                f"{', '.join(model.quants)}. See `qwendesk catalog`."
            )
        close = difflib.get_close_matches(wanted, [*exact, *self.models], n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(close)}?" if close else ""
        raise CatalogError(
            f"No model named {name!r} in the catalog.{hint} See `qwendesk catalog` for the list."
        )


def parse_catalog(data: Mapping[str, Any], origin: str = "catalog") -> list[CatalogModel]:
    """Models from a catalog document (the format of catalog.json)."""
    try:
        return [_model(m) for m in data["models"]]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise BadCatalog(f"The catalog {origin} is malformed ({exc!r}). Fix or remove it.") from exc


def parse_defaults(data: Mapping[str, Any], origin: str = "catalog") -> dict[str, str]:
    """The `defaults` of a catalog document: kind -> model name (optional)."""
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, Mapping) or not all(isinstance(v, str) for v in defaults.values()):
        raise BadCatalog(f"The catalog {origin} has malformed defaults ({defaults!r}). Fix or remove it.")
    return dict(defaults)


def load_catalog(extra: Path | None = None) -> Catalog:
    """The built-in catalog, with entries (and defaults) from `extra` (a user's JSON file) added or replacing."""
    builtin = json.loads(resources.files(__package__).joinpath("catalog.json").read_text(encoding="utf-8"))
    models = {m.name: m for m in parse_catalog(builtin, "built into qwendesk")}
    defaults = parse_defaults(builtin, "built into qwendesk")
    if extra is not None:
        try:
            data = json.loads(Path(extra).expanduser().read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BadCatalog(f"Could not read the catalog file {extra}: {exc}.") from exc
        models.update({m.name: m for m in parse_catalog(data, str(extra))})
        defaults.update(parse_defaults(data, str(extra)))
    return Catalog(list(models.values()), defaults)


def file_url(repo: str, file: str, source: str, endpoint: str) -> str:
    """Download URL of one file on a hub (HF `resolve/main`, ModelScope `resolve/master`)."""
    base = endpoint.rstrip("/")
    if source == "huggingface":
        return f"{base}/{repo}/resolve/main/{file}"
    if source == "modelscope":
        return f"{base}/models/{repo}/resolve/master/{file}"
    raise BadCatalog(f"Unknown catalog source {source!r}; use one of {', '.join(SOURCES)}.")


def kv_cache_bytes(arch: Arch, n_ctx: int) -> int:
    """K and V for every layer and context position, f16 (none for encoders)."""
    if not arch.kv_cache:
        return 0
    return 2 * arch.layers * arch.kv_heads * arch.head_dim * n_ctx * KV_BYTES_PER_VALUE


def estimate_memory(release: Release, n_ctx: int) -> int:
    """An ESTIMATE of the RAM a started model needs: file size x 1.2 plus the KV cache for n_ctx tokens."""
    return int(release.size * MEMORY_OVERHEAD) + kv_cache_bytes(release.model.arch, n_ctx)


def fits(release: Release, n_ctx: int, available: int) -> bool:
    """Whether the estimate is below the available RAM (an estimate, not a promise)."""
    return estimate_memory(release, n_ctx) < available
