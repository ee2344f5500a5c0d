"""Which compute a model runs on (Metal on Apple Silicon, else CPU), and the memory there is."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from typing import Any

import psutil

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


def memory_snapshot() -> dict[str, int]:
    """Total and available RAM in bytes."""
    vm = psutil.virtual_memory()
    return {"total_bytes": vm.total, "available_bytes": vm.available}
