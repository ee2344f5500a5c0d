"""Every argument of one model launch, built in one place (`launch_plan`), and the model's own engine address."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from qwendesk.models.folder import ModelFiles

from ..accelerator import Accelerator
from ..config import Settings
from ..ports import free_port
from ..schemas import StartRequest
from ..xinference.registration import model_type, size_in_billions

# What a model process costs beside its weights and KV cache (Python, Xinference, the engine's buffers).
MODEL_PROCESS_OVERHEAD = 600 * 2**20


@dataclass(frozen=True)
class Engine:
    """Address and secret of a model's own llama-server, chosen by the daemon at launch."""

    url: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    @classmethod
    def new(cls) -> Engine:
        return cls(f"http://127.0.0.1:{free_port()}", secrets.token_urlsafe(32))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@dataclass(frozen=True)
class LaunchPlan:
    """What Xinference's `launch` is given for one model, and what the daemon keeps from it."""

    model_type: str  # Xinference's spelling: "LLM", "embedding" or "rerank"
    model_size: int | str | None  # embedding and rerank registrations carry no size
    quantization: str
    engine_kwargs: dict[str, Any]  # llama.cpp settings (xllamacpp CommonParams fields) and Xinference's own
    n_ctx: int  # context per request
    engine: Engine | None  # the model's own llama-server, when the daemon talks to it directly

    @property
    def total_ctx(self) -> int:
        return self.engine_kwargs["n_ctx"]

    def memory_needed(self, files: ModelFiles) -> tuple[int, int]:
        """(bytes the launch needs in all, of which KV cache) for the memory check before a start."""
        kv = files.info.kv_cache_bytes(self.total_ctx) if files.info is not None else 0
        return files.size_bytes + kv + MODEL_PROCESS_OVERHEAD, kv


def launch_plan(
    settings: Settings, accel: Accelerator, files: ModelFiles, options: StartRequest, *, direct: bool
) -> LaunchPlan:
    """The launch of `files` with `options` over the settings' defaults.

    Xinference splits `n_ctx` across `n_parallel` slots and defaults the slot count to the core count, so
    both are always given: every request then gets the context the user asked for. `direct` gives the
    model's llama-server a port and key of ours (the /v1 proxy talks to it; a disconnect stops generation).
    """
    per_request = options.n_ctx or settings.n_ctx
    slots = options.n_parallel or settings.n_parallel
    gpu_layers = options.n_gpu_layers
    if gpu_layers is None:
        gpu_layers = settings.n_gpu_layers if settings.n_gpu_layers is not None else accel.default_gpu_layers
    kwargs: dict[str, Any] = {
        "n_ctx": per_request * slots,
        "n_parallel": slots,
        "n_gpu_layers": gpu_layers,
        "n_threads": settings.n_threads or accel.physical_cores,
        # Xinference leaves llama.cpp's prompt cache at 8 GiB per model; bound it.
        "cache_ram_mib": settings.cache_ram_mib,
    }
    kind = model_type(files)
    reg, info = files.registration, files.info
    if kind in ("embedding", "rerank"):
        # One input (a reranker's: query + document) is pooled in a single llama.cpp batch: cap each slot's
        # context at the trained one and make the batch sizes match it, else long inputs fail.
        if info is not None and info.context_length:
            per_request = min(per_request, info.context_length)
        kwargs.update(n_ctx=per_request * slots, n_batch=per_request, n_ubatch=per_request)
        if reg is not None:
            # Xinference's embedder would force `last`; a reranker's is rank (llama-server's --reranking).
            kwargs["pooling_type"] = reg.pooling_type
    elif files.mmproj:
        kwargs["multimodal_projector"] = str(files.mmproj.resolve())
        # The pixel budget already bounds an image; rounding can take it a few tokens over, and llama.cpp's
        # own cap keeps even an image that bypassed us (a remote Xinference's clients) within it.
        from ..vision.images import tokens_cap  # Pillow loads with the first vision model, not at start-up

        patch = 16 if info is not None and info.architecture.startswith("qwen3") else 14
        kwargs["image_max_tokens"] = tokens_cap(settings.image_max_pixels, patch)
    engine = Engine.new() if direct else None
    if engine is not None:
        # xllamacpp's HTTP server on our port, refusing requests without our key.
        kwargs.update(port=engine.port, api_keys=[engine.key])
    assert info is not None and info.quantization, "only registrable models are launched"
    return LaunchPlan(
        model_type=kind,
        model_size=None if kind in ("embedding", "rerank") else size_in_billions(info),
        quantization=info.quantization,
        engine_kwargs=kwargs,
        n_ctx=per_request,
        engine=engine,
    )
