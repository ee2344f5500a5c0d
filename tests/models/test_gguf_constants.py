"""gguf's constants, loaded without the gguf package (and so without numpy)."""

from __future__ import annotations

import random
import subprocess
import sys

import gguf
import gguf.utility

from qwendesk.models import gguf_constants as gc


def test_tables_are_the_installed_gguf_ones() -> None:
    assert {t.name: v for t, v in gc.GGML_QUANT_SIZES.items()} == {
        t.name: v for t, v in gguf.GGML_QUANT_SIZES.items()
    }
    assert sorted(gc.MODEL_ARCH_NAMES.values()) == sorted(gguf.MODEL_ARCH_NAMES.values())
    for ours, theirs in (
        (gc.GGMLQuantizationType, gguf.GGMLQuantizationType),
        (gc.GGUFValueType, gguf.GGUFValueType),
        (gc.LlamaFileType, gguf.LlamaFileType),
    ):
        assert [(m.name, m.value) for m in ours] == [(m.name, m.value) for m in theirs]
    assert (gc.GGUF_MAGIC, gc.GGUF_DEFAULT_ALIGNMENT) == (gguf.GGUF_MAGIC, gguf.GGUF_DEFAULT_ALIGNMENT)


def test_weight_count_label_matches_gguf() -> None:
    rng = random.Random(7)
    counts = [1, 999, 1000, 1001, 10**6, 10**6 + 1, 134_515_008, 494_032_768, 1_543_714_304, 10**12 + 1]
    counts += [rng.randrange(1, 10**13) for _ in range(20_000)]
    counts += [rng.randrange(1, 10**7) for _ in range(20_000)]
    for n in counts:
        assert gc.weight_count_label(n) == gguf.utility.model_weight_count_rounded_notation(n), n


def test_the_daemon_imports_neither_gguf_nor_numpy() -> None:
    """What `qwendesk serve` imports to list and register models: numpy would cost ~11 MiB idle."""
    code = (
        "import sys\n"
        "import qwendesk.daemon.cli, qwendesk.daemon.server, qwendesk.daemon.app\n"
        "import qwendesk.daemon.lifecycle.manager, qwendesk.daemon.xinference.registration\n"
        "import qwendesk.models.folder, qwendesk.daemon.watcher, qwendesk.models.families\n"
        "print(' '.join(m for m in ('numpy', 'gguf', 'torch', 'xinference') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
