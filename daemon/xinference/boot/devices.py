"""What the real `xinference.device_utils` would find, told without importing torch.

Runs inside the embedded Xinference (standard library only). device_utils imports torch at module level
(0.9-1.8 s and ~200 MiB here) to ask torch which accelerator is present. Which one *can* be present follows
from files: torch's build flags (torch/version.py) and the vendor packages device_utils itself tries to
import. When neither can give an accelerator, every answer device_utils gives is the CPU one.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys

# The packages device_utils imports to find Metax, Ascend, Cambricon, VACC, Moore Threads and Enflame
# devices, and the Intel extension xinference/__init__.py imports (it can make torch.xpu available).
VENDOR_PACKAGES = (
    "pymxsml",
    "torch_npu",
    "torch_mlu",
    "torch_vacc",
    "torch_musa",
    "torchada",
    "torch_gcu",
    "intel_extension_for_pytorch",
)
ACCELERATOR_BUILDS = ("cuda", "hip", "rocm", "xpu")  # torch.version fields set by GPU builds


def torch_build() -> dict[str, object] | None:
    """torch.version's simple assignments ({} when torch is not installed, None when unreadable)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = os.path.join(next(iter(spec.submodule_search_locations)), "version.py")
    try:
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
    except (OSError, SyntaxError, ValueError):
        return None
    values: dict[str, object] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
        if isinstance(node, ast.AnnAssign):
            target = node.target
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and value is not None:
            try:
                values[target.id] = ast.literal_eval(value)
            except ValueError:
                continue
    return values


def torch_free() -> str | None:
    """ "cpu" when no accelerator can be found; "darwin" on macOS, where torch may still report MPS (Metal):
    answers that are the same with and without MPS are given, the others import the real module; None when
    a GPU build of torch or a vendor package is installed: then only the real module can answer."""
    build = torch_build()
    if build is None or any(build.get(field) for field in ACCELERATOR_BUILDS):
        return None
    if any(importlib.util.find_spec(name) is not None for name in VENDOR_PACKAGES):
        return None
    return "darwin" if sys.platform == "darwin" else "cpu"
