"""Wire shapes of the control API (/api/*): what the routes answer and the HTTP client hands its callers."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, Field


class ModelState(str, Enum):
    AVAILABLE = "available"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    ERROR = "error"


class ModelView(BaseModel):
    """One model as `GET /api/models` lists it."""

    name: str
    kind: str | None = Field(
        None, description="'chat', 'embedding', 'rerank' (GGUF models) or 'speech' (Whisper, speech to text)."
    )
    format: str = Field("gguf", description="'gguf', or 'ctranslate2' for a faster-whisper model folder.")
    file: str = Field(
        description="Absolute path of the GGUF (first shard for split files), or a speech model's folder."
    )
    files: list[str] = Field(default_factory=list, description="All shards, in order.")
    mmproj: str | None = Field(None, description="Paired vision projector, if any.")
    architecture: str | None = None
    parameters: str | None = Field(None, description="Size label, e.g. '0.5B'.")
    parameter_count: int | None = None
    quantization: str | None = None
    size_bytes: int = 0
    context_length: int | None = Field(None, description="Context the model was trained for.")
    family: str | None = Field(None, description="Xinference model_family it is registered with.")
    chat_template: bool = Field(False, description="The GGUF carries its own chat template.")
    abilities: list[str] = Field(
        default_factory=list,
        description="What it can do: chat, generate, tools, vision, audio (hears input_audio), embed, rerank, "
        "transcribe, translate (speech models).",
    )
    languages: list[str] = Field(default_factory=list, description="Speech models: the languages they know.")
    can_translate: bool = Field(False, description="Speech models: /v1/audio/translations into English.")
    state: ModelState = ModelState.AVAILABLE
    error: str | None = None
    n_ctx: int | None = Field(None, description="Context per request while running.")


class StartRequest(BaseModel):
    """Body of POST /api/models/{name}/start; every field is optional."""

    n_ctx: int | None = Field(None, ge=256)
    n_gpu_layers: int | None = None
    n_parallel: int | None = Field(None, ge=1, le=64)


class AddRequest(BaseModel):
    path: str


class SupervisorView(BaseModel):
    mode: str = Field(description="'embedded' or 'remote'.")
    state: str = Field(description="stopped | starting | running | restarting | failed | remote")
    endpoint: str | None = None
    pid: int | None = None
    error: str | None = None
