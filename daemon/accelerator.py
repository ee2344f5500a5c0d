"""Which compute a model runs on (Metal on Apple Silicon, else CPU) and the launch settings that follow."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

import psutil

from .config import Settings
from .schemas import StartRequest

# Offload every layer: llama.cpp clamps this to the model's layer count.
ALL_LAYERS = -1


@dataclass(frozen=True)
class Accelerator:
    kind: str  # "metal" | "cpu"
    name: str
    physical_cores: int
    default_gpu_layers: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def physical_cores() -> int:
    """Physical cores: llama.cpp decodes no faster with hyper-threads, and slower with E-cores busy."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def detect(system: str | None = None, machine: str | None = None, cores: int | None = None) -> Accelerator:
    """Metal on macOS/arm64 (the xllamacpp macOS wheel is built with Metal); the CPU everywhere else."""
    system = system or platform.system()
    machine = (machine or platform.machine()).lower()
    cores = cores or physical_cores()
    if system == "Darwin" and machine in ("arm64", "aarch64"):
        return Accelerator("metal", "Apple Silicon GPU (Metal)", cores, ALL_LAYERS)
    return Accelerator("cpu", f"CPU ({machine}, {cores} physical cores)", cores, 0)


def launch_kwargs(settings: Settings, accel: Accelerator, request: StartRequest) -> dict[str, Any]:
    """llama.cpp engine arguments for one launch.

    Xinference splits `n_ctx` across `n_parallel` slots and defaults the slot count to the core count,
    so both are always given: every request then gets the context the user asked for.
    """
    per_request = request.n_ctx or settings.n_ctx
    slots = request.n_parallel or settings.n_parallel
    gpu_layers = request.n_gpu_layers
    if gpu_layers is None:
        gpu_layers = settings.n_gpu_layers if settings.n_gpu_layers is not None else accel.default_gpu_layers
    threads = settings.n_threads or accel.physical_cores
    return {
        "n_ctx": per_request * slots,
        "n_parallel": slots,
        "n_gpu_layers": gpu_layers,
        "n_threads": threads,
        # Xinference leaves llama.cpp's prompt cache at 8 GiB per model; bound it.
        "cache_ram_mib": settings.cache_ram_mib,
    }


def memory_snapshot() -> dict[str, int]:
    """Total and available RAM in bytes."""
    vm = psutil.virtual_memory()
    return {"total_bytes": vm.total, "available_bytes": vm.available}
