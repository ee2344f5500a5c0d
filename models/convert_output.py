"""What the converter's modules, the quantizer and their CLI share: output type names, the progress callback
and reading a checkpoint's JSON files.

Kept free of numpy and gguf imports so the CLI can build its parser without loading them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ModelFileError

# (bytes done, bytes total, what is being worked on)
ProgressFn = Callable[[int, int, str], None]

# Written by the converter itself, tensor by tensor, with no llama.cpp pass.
DIRECT_TYPES = ("f16", "bf16", "f32", "q8_0")
# Made by llama.cpp's quantizer from an f16/bf16/f32 GGUF (the convert extra).
QUANT_TYPES = ("q4_0", "q4_k_m", "q5_k_m", "q8_0")
CONVERT_TYPES = (*DIRECT_TYPES, *(t for t in QUANT_TYPES if t not in DIRECT_TYPES))

REDOWNLOAD_HINT = "Download the checkpoint again."


def read_json(path: Path, hint: str = REDOWNLOAD_HINT) -> Any:
    """A checkpoint's JSON file; unreadable or invalid JSON is a ModelFileError ending with `hint`."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"Could not read {path} ({exc}). {hint}") from exc
