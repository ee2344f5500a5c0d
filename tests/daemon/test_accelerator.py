"""Metal on Apple Silicon, CPU with physical cores elsewhere (the platform is faked here)."""

from __future__ import annotations

from qwendesk.daemon import accelerator
from qwendesk.daemon.config import load_settings
from qwendesk.daemon.schemas import StartRequest


def test_apple_silicon_offloads_everything_to_metal() -> None:
    acc = accelerator.detect(system="Darwin", machine="arm64", cores=8)
    assert acc.kind == "metal"
    kw = accelerator.launch_kwargs(load_settings(), acc, StartRequest())
    assert kw["n_gpu_layers"] == -1
    assert kw["n_threads"] == 8


def test_intel_mac_linux_and_windows_use_the_cpu() -> None:
    for system, machine in (
        ("Darwin", "x86_64"),
        ("Linux", "x86_64"),
        ("Windows", "AMD64"),
        ("Linux", "aarch64"),
    ):
        acc = accelerator.detect(system=system, machine=machine, cores=4)
        assert acc.kind == "cpu", (system, machine)
        assert accelerator.launch_kwargs(load_settings(), acc, StartRequest())["n_gpu_layers"] == 0


def test_context_is_per_request_whatever_the_slot_count() -> None:
    acc = accelerator.detect(system="Linux", machine="x86_64", cores=2)
    kw = accelerator.launch_kwargs(load_settings(), acc, StartRequest(n_ctx=2048, n_parallel=4))
    assert kw["n_ctx"] == 2048 * 4 and kw["n_parallel"] == 4
    assert kw["cache_ram_mib"] == 256


def test_overrides_win() -> None:
    acc = accelerator.detect(system="Darwin", machine="arm64", cores=8)
    s = load_settings(flags={"n_gpu_layers": 10, "n_threads": 3})
    kw = accelerator.launch_kwargs(s, acc, StartRequest())
    assert (kw["n_gpu_layers"], kw["n_threads"]) == (10, 3)
    assert accelerator.launch_kwargs(s, acc, StartRequest(n_gpu_layers=0))["n_gpu_layers"] == 0


def test_physical_cores_is_positive() -> None:
    assert accelerator.physical_cores() >= 1
