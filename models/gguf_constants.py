"""The `gguf` package's constants (enums, quantization sizes, architecture names), without the package.

`import gguf.constants` first runs gguf/__init__.py, which imports numpy, the writer and the reader:
+14 MiB resident and 0.4 s in the daemon, which only needs these tables to read GGUF headers. So we
execute gguf/constants.py (pure enums and dicts, standard library only) on its own, from the installed
gguf package: one source of truth, none of its imports. Convert and quantize still use `gguf` itself.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

_NAME = "qwendesk.models._gguf_constants"


def _load() -> ModuleType:
    """Execute the installed gguf/constants.py as a module of its own."""
    package = importlib.util.find_spec("gguf")  # finds the package without executing its __init__
    if package is None or not package.submodule_search_locations:
        raise ImportError("the 'gguf' package is not installed; reinstall qwendesk")
    path = Path(next(iter(package.submodule_search_locations))) / "constants.py"
    spec = importlib.util.spec_from_file_location(_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}; reinstall the 'gguf' package")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_NAME] = module  # registered first so its enums pickle
    spec.loader.exec_module(module)
    return module


_constants = _load()

GGML_QUANT_SIZES = _constants.GGML_QUANT_SIZES
GGUF_DEFAULT_ALIGNMENT: int = _constants.GGUF_DEFAULT_ALIGNMENT
GGUF_MAGIC: int = _constants.GGUF_MAGIC
MODEL_ARCH_NAMES = _constants.MODEL_ARCH_NAMES
GGMLQuantizationType = _constants.GGMLQuantizationType
GGUFValueType = _constants.GGUFValueType
LlamaFileType = _constants.LlamaFileType


def weight_count_label(n_params: int, min_digits: int = 2) -> str:
    """'0.5B' / '135M' / '1.5K', exactly as gguf.utility.model_weight_count_rounded_notation writes it.

    Restated here because gguf.utility imports numpy at module level.
    """
    # The same thresholds and multiplications as gguf's, so float rounding agrees to the last digit.
    steps = ((1e12, 1e-12, "T"), (1e9, 1e-9, "B"), (1e6, 1e-6, "M"), (-math.inf, 1e-3, "K"))
    scale, suffix = next((scale, suffix) for limit, scale, suffix in steps if n_params > limit)
    scaled = n_params * scale
    fix = max(min_digits - len(str(round(scaled)).lstrip("0")), 0)
    return f"{scaled:.{fix}f}{suffix}"
