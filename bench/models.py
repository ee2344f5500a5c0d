"""The GGUF files benchmarked: the real SmolLM2, and Qwen2.5-0.5B-shaped random-weight files (cached)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("QWENDESK_BENCH_CACHE", Path.home() / ".cache" / "qwendesk-bench"))
TEST_CACHE = Path(os.environ.get("QWENDESK_TEST_CACHE", Path.home() / ".cache" / "qwendesk-test"))
SMOLLM2 = TEST_CACHE / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class BenchModel:
    """One GGUF to benchmark; `key` names it in tables and doubles as its qwendesk model name."""

    key: str
    path: Path
    label: str


def smollm2() -> BenchModel:
    if not SMOLLM2.exists():  # the test fixture knows how to fetch it
        from tests.conftest import fetch_smollm2

        fetch_smollm2(TEST_CACHE)
    return BenchModel("smollm2-135m-q4_1", SMOLLM2, "SmolLM2-135M-Instruct Q4_1 (real)")


def qwen_synthetic(file_type: str, cache: Path = CACHE) -> BenchModel:
    """Qwen2.5-0.5B-shaped random weights; Q4_K_M via llama.cpp's quantizer from an F16 file."""
    key = f"qwen2.5-0.5b-synth-{file_type.lower()}"
    path = cache / f"{key}.gguf"
    label = f"Qwen2.5-0.5B-shaped {file_type} (random weights)"
    if path.exists():
        return BenchModel(key, path, label)
    cache.mkdir(parents=True, exist_ok=True)
    from tests.fixtures.synthetic import FILE_TYPES, write_qwen_gguf

    if file_type in FILE_TYPES:
        write_qwen_gguf(path, arch="qwen2", shape="qwen2.5-0.5b", file_type=file_type)
    else:
        f16 = cache / "qwen2.5-0.5b-synth-f16.gguf"
        if not f16.exists():
            write_qwen_gguf(f16, arch="qwen2", shape="qwen2.5-0.5b", file_type="F16")
        from qwendesk.models.quantize import quantize_gguf

        quantize_gguf(f16, path, file_type.lower(), threads=2)
    return BenchModel(key, path, label)


def user_model(path: str) -> BenchModel:
    """Any GGUF the user points the harness at."""
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise SystemExit(f"No GGUF file at {p}.")
    key = p.stem.lower().replace(" ", "-")
    return BenchModel(key, p, f"{p.name} (user file)")


def resolve(names: list[str]) -> list[BenchModel]:
    """`smollm2`, `q4_0`, `q4_k_m` or a path, in order."""
    out = []
    for name in names:
        if name == "smollm2":
            out.append(smollm2())
        elif name.upper() in ("Q4_0", "Q4_K_M", "Q8_0", "Q4_1"):
            out.append(qwen_synthetic(name.upper()))
        else:
            out.append(user_model(name))
    return out


if __name__ == "__main__":
    import sys

    for m in resolve(sys.argv[1:] or ["smollm2", "q4_0", "q4_k_m"]):
        print(m.key, m.path, m.path.stat().st_size)
