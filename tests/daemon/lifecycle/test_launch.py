"""launch_plan: every launch argument from settings, start options, the accelerator and the files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qwendesk.daemon import accelerator
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.lifecycle.launch import launch_plan
from qwendesk.daemon.schemas import StartRequest
from qwendesk.models.folder import ModelFiles, scan


@pytest.fixture
def model(tmp_path: Path, qwen2_gguf: Path) -> ModelFiles:
    shutil.copy(qwen2_gguf, tmp_path / "tiny.gguf")
    return scan([tmp_path])["tiny"]


def plan(model: ModelFiles, acc=None, settings=None, direct: bool = False, **options):
    acc = acc or accelerator.detect(system="Linux", machine="x86_64", cores=2)
    return launch_plan(settings or load_settings(env={}), acc, model, StartRequest(**options), direct=direct)


def test_apple_silicon_offloads_everything_to_metal(model: ModelFiles) -> None:
    acc = accelerator.detect(system="Darwin", machine="arm64", cores=8)
    kw = plan(model, acc).engine_kwargs
    assert kw["n_gpu_layers"] == -1
    assert kw["n_threads"] == 8


def test_intel_mac_linux_and_windows_use_the_cpu(model: ModelFiles) -> None:
    for system, machine in (("Darwin", "x86_64"), ("Linux", "x86_64"), ("Windows", "AMD64")):
        acc = accelerator.detect(system=system, machine=machine, cores=4)
        assert plan(model, acc).engine_kwargs["n_gpu_layers"] == 0


def test_context_is_per_request_whatever_the_slot_count(model: ModelFiles) -> None:
    p = plan(model, n_ctx=2048, n_parallel=4)
    kw = p.engine_kwargs
    assert kw["n_ctx"] == 2048 * 4 and kw["n_parallel"] == 4 and p.n_ctx == 2048
    assert kw["cache_ram_mib"] == 256


def test_overrides_win(model: ModelFiles) -> None:
    acc = accelerator.detect(system="Darwin", machine="arm64", cores=8)
    s = load_settings(flags={"n_gpu_layers": 10, "n_threads": 3}, env={})
    kw = plan(model, acc, s).engine_kwargs
    assert (kw["n_gpu_layers"], kw["n_threads"]) == (10, 3)
    assert plan(model, acc, s, n_gpu_layers=0).engine_kwargs["n_gpu_layers"] == 0


def test_a_direct_engine_gets_our_port_and_key(model: ModelFiles) -> None:
    p = plan(model, direct=True)
    assert p.engine is not None
    assert p.engine_kwargs["port"] == p.engine.port and p.engine_kwargs["api_keys"] == [p.engine.key]
    assert p.engine.headers == {"Authorization": f"Bearer {p.engine.key}"}
    assert len(p.engine.key) >= 32 and plan(model, direct=True).engine.key != p.engine.key
    indirect = plan(model)
    assert indirect.engine is None and "api_keys" not in indirect.engine_kwargs


def test_what_xinference_is_told(model: ModelFiles) -> None:
    p = plan(model)
    assert (p.model_type, p.quantization) == ("LLM", model.quantization)
    assert p.model_size is not None
    need, kv = p.memory_needed(model)
    assert kv > 0 and need > model.size_bytes + kv
