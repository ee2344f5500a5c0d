"""All qwendesk settings, declared once: defaults < config.toml < QWENDESK_* environment < CLI flags."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .errors import ConfigError, describe_problems

APP_NAME = "qwendesk"
ENV_PREFIX = "QWENDESK_"
DEFAULT_PORT = 11470


class Settings(BaseModel):
    """Every setting, with its default and help text; the CLI, the docs and /api/config come from here."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path | None = Field(
        None, description="Folder that holds all state (config, models, Xinference home, logs, run files)."
    )
    host: str = Field("127.0.0.1", description="Address the daemon listens on. Keep it on loopback.")
    port: int = Field(DEFAULT_PORT, ge=0, le=65535, description="TCP port of the daemon's HTTP API.")
    ollama_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="TCP port of an Ollama-compatible API (/api/chat, /api/tags, ...) on the daemon's address for"
        " apps that speak only Ollama's protocol, e.g. 11434 when no Ollama runs (0 = off).",
    )
    models_dirs: list[Path] = Field(
        default_factory=list,
        description="Folders watched for .gguf files (default: the models folder in the data folder).",
    )
    token: str | None = Field(
        None, description="Bearer token every /api and /v1 request must carry (off when empty)."
    )
    allowed_origins: list[str] = Field(
        default_factory=list, description="Extra browser origins allowed to call the API."
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="Extra Host header values accepted (DNS-rebinding guard)."
    )
    xinference_endpoint: str | None = Field(
        None, description="Use this Xinference supervisor (e.g. a cluster) instead of starting one."
    )
    xinference_api_key: str | None = Field(
        None,
        description="Credentials for a remote Xinference with auth on: an admin's `username:password` (needed to"
        " register and launch), or an `xf-` key (listing and chat only).",
    )
    xinference_light: bool = Field(
        True,
        description="Run the embedded Xinference without torch, transformers and unused engines, its model "
        "processes forked from a pre-imported parent on Linux (off: Xinference as it ships).",
    )
    supervisor_start: Literal["lazy", "eager"] = Field(
        "lazy", description="Start the embedded Xinference on the first model start (lazy) or at once."
    )
    keep_alive: float = Field(
        300.0,
        ge=0,
        description="Idle seconds before a model started on demand stops, and then the embedded Xinference (0 = never).",
    )
    supervisor_timeout: float = Field(
        300.0, gt=0, description="Seconds to wait for the embedded Xinference to answer."
    )
    supervisor_hang_timeout: float = Field(
        60.0,
        ge=5,
        description="Seconds a running embedded Xinference may stop answering before it is restarted.",
    )
    n_ctx: int = Field(4096, ge=256, description="Context length per request (tokens) for a started model.")
    n_parallel: int = Field(1, ge=1, le=64, description="Requests a model serves at once (llama.cpp slots).")
    n_gpu_layers: int | None = Field(
        None, description="Layers offloaded to the GPU (default: all on Apple Silicon, 0 elsewhere)."
    )
    n_threads: int | None = Field(None, ge=1, description="CPU threads per model (default: physical cores).")
    cache_ram_mib: int = Field(
        256,
        ge=0,
        description="llama.cpp prompt-cache budget per model in MiB (Xinference's default is 8192).",
    )
    image_max_pixels: int = Field(
        401_408,
        ge=28 * 28,
        description="Pixel budget of one image in a chat request: larger images are scaled down to it before "
        "they reach the model (401,408 px = 512 image tokens for Qwen2/2.5-VL, ~40 s to encode on 2 CPU cores).",
    )
    image_max_bytes: int = Field(
        20 * 2**20, ge=1024, description="Largest image a request may carry, in bytes."
    )
    image_max_source_pixels: int = Field(
        50_000_000,
        ge=28 * 28,
        description="Largest image, in pixels, that is decoded at all (decompression bombs).",
    )
    image_fetch: bool = Field(
        False,
        description="Let qwendesk download http(s) image URLs in chat requests (off: send images as data URLs).",
    )
    image_fetch_timeout: float = Field(10.0, gt=0, description="Seconds one image download may take.")
    speech_max_seconds: float = Field(
        600.0,
        gt=0,
        description="Longest audio a speech model transcribes, in seconds (about 50 MiB of worker memory per minute).",
    )
    speech_max_upload_mib: float = Field(
        25.0,
        gt=0,
        description="Largest audio upload to /v1/audio (and audio part in a chat request), in MiB.",
    )
    auto_start: bool = Field(
        True, description="A /v1 request naming a stopped model starts it (like Ollama)."
    )
    embedding_model: str | None = Field(
        None,
        description="Embedding model of the document collections (a model name; default: the embedding GGUF in "
        "the models folders, the catalog's default first; `none`: keyword search only). Changing it re-embeds "
        "in the background.",
    )
    rerank_model: str | None = Field(
        None,
        description="Reranker of document search (a model name; default: the reranker GGUF in the models "
        "folders, the catalog's default first; `none`: no reranking).",
    )
    documents_keep_alive: float = Field(
        60.0,
        ge=0,
        description="Idle seconds before the documents indexer process stops; the next search or folder change "
        "starts it again (0 = never).",
    )
    catalog_source: Literal["modelscope", "huggingface"] = Field(
        "modelscope", description="Where `qwendesk pull` downloads from."
    )
    huggingface_endpoint: str = Field("https://huggingface.co", description="Hugging Face hub base URL.")
    modelscope_endpoint: str = Field("https://modelscope.cn", description="ModelScope hub base URL.")
    catalog_file: Path | None = Field(
        None,
        description="JSON file of extra `qwendesk pull` catalog entries (same format as the built-in one).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level of the daemon and the tray."
    )

    # ---- derived paths -------------------------------------------------------------------------
    @property
    def config_dir(self) -> Path:
        return self.home if self.home else Path(platformdirs.user_config_dir(APP_NAME))

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def data_dir(self) -> Path:
        return self.home if self.home else Path(platformdirs.user_data_dir(APP_NAME))

    @property
    def log_dir(self) -> Path:
        return self.home / "logs" if self.home else Path(platformdirs.user_log_dir(APP_NAME))

    @property
    def run_dir(self) -> Path:
        """Pid, lock and secret files."""
        return self.home / "run" if self.home else Path(platformdirs.user_state_dir(APP_NAME)) / "run"

    @property
    def xinference_home(self) -> Path:
        return self.data_dir / "xinference"

    @property
    def documents_dir(self) -> Path:
        """The folder of the default document collection."""
        return self.data_dir / "documents"

    @property
    def model_folders(self) -> list[Path]:
        """The watched folders; the first one is where pulls and conversions land."""
        return [p.expanduser().resolve() for p in self.models_dirs] or [self.data_dir / "models"]

    @property
    def url(self) -> str:
        """Base URL clients use to reach the daemon."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}"

    @property
    def ollama_url(self) -> str | None:
        """Base URL of the Ollama-compatible API, when it is on."""
        return self.url.rsplit(":", 1)[0] + f":{self.ollama_port}" if self.ollama_port else None

    def public_dict(self) -> dict[str, Any]:
        """Settings as JSON-able values, secrets redacted."""
        data = self.model_dump(mode="json")
        for secret in ("token", "xinference_api_key"):
            if data.get(secret):
                data[secret] = "***"
        data["home"] = str(self.data_dir)
        data["models_dirs"] = [str(p) for p in self.model_folders]
        data["config_file"] = str(self.config_file)
        data["log_dir"] = str(self.log_dir)
        return data


FIELDS = Settings.model_fields


def env_name(field: str) -> str:
    """QWENDESK_* variable for a setting."""
    return ENV_PREFIX + field.upper()


def flag_name(field: str) -> str:
    """CLI flag for a setting."""
    return "--" + field.replace("_", "-")


def is_list(field: str) -> bool:
    return get_origin(FIELDS[field].annotation) is list


def is_bool(field: str) -> bool:
    return FIELDS[field].annotation is bool


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Settings given as QWENDESK_* variables; lists are separated by os.pathsep or commas."""
    values: dict[str, Any] = {}
    for name in FIELDS:
        raw = env.get(env_name(name))
        if raw is None:
            continue
        if is_list(name):
            sep = os.pathsep if name == "models_dirs" else ","
            values[name] = [part.strip() for part in raw.split(sep) if part.strip()]
        elif raw == "" and type(None) in get_args(FIELDS[name].annotation):
            values[name] = None
        else:
            values[name] = raw
    return values


def _from_file(path: Path) -> dict[str, Any]:
    """Settings from config.toml; a missing file is no settings."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Could not read the config file {path}: {exc}. Fix or remove it.") from exc
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ConfigError(f"Unknown setting(s) {', '.join(unknown)} in {path}. Known: {', '.join(FIELDS)}.")
    return data


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Merge defaults < config file < environment < flags into one Settings."""
    env = os.environ if env is None else env
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env_values = _from_env(env)
    home = flags.get("home") or env_values.get("home")
    probe = Settings(home=Path(home).expanduser() if home else None)
    merged: dict[str, Any] = {**_from_file(probe.config_file), **env_values, **flags}
    if home:
        merged["home"] = Path(home).expanduser().resolve()
    try:
        return Settings(**merged)
    except ValidationError as exc:
        raise ConfigError(
            f"Invalid settings ({describe_problems(list(exc.errors()))}). "
            f"Check {probe.config_file} and QWENDESK_* variables."
        ) from exc


def describe() -> list[dict[str, str]]:
    """One row per setting: name, env variable, flag, default and help (for --help and docs)."""
    rows = []
    for name, field in FIELDS.items():
        default = field.get_default(call_default_factory=True)
        rows.append(
            {
                "name": name,
                "env": env_name(name),
                "flag": flag_name(name),
                "default": "" if default in (None, []) else str(default),
                "help": field.description or "",
            }
        )
    return rows


def markdown_table() -> str:
    """The settings as a markdown table (README.md embeds it; a test keeps the two in step)."""
    lines = ["| setting | environment | flag | default | meaning |", "|---|---|---|---|---|"]
    for r in describe():
        default = f"`{r['default']}`" if r["default"] else ""
        lines.append(f"| `{r['name']}` | `{r['env']}` | `{r['flag']}` | {default} | {r['help']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
