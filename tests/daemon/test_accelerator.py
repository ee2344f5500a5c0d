"""Metal on Apple Silicon, CPU with physical cores elsewhere (the platform is faked here)."""

from __future__ import annotations

from qwendesk.daemon import accelerator


def test_apple_silicon_offloads_everything_to_metal() -> None:
    acc = accelerator.detect(system="Darwin", machine="arm64", cores=8)
    assert acc.kind == "metal"
    assert acc.default_gpu_layers == -1 and acc.physical_cores == 8


def test_intel_mac_linux_and_windows_use_the_cpu() -> None:
    for system, machine in (
        ("Darwin", "x86_64"),
        ("Linux", "x86_64"),
        ("Windows", "AMD64"),
        ("Linux", "aarch64"),
    ):
        acc = accelerator.detect(system=system, machine=machine, cores=4)
        assert acc.kind == "cpu", (system, machine)
        assert acc.default_gpu_layers == 0


def test_physical_cores_is_positive() -> None:
    assert accelerator.physical_cores() >= 1
