"""What runs inside the embedded Xinference's own interpreters to make it lighter (never in a remote one).

`environment()` puts site/ first on the embedded `xinference-local`'s PYTHONPATH; its sitecustomize.py
then loads, in each of that Xinference's processes, light.py (no torch, transformers or unused model
families: devices.py, device_utils.py) and, on Linux, forkserver.py (the worker and model sub-pools are
forked from a pre-imported parent). Measured effects are in bench/FINDINGS.md §6.
The `xinference_light` setting (off: Xinference as it ships) reaches the child as QWENDESK_XINFERENCE_LIGHT.
Two diagnostics are read by the child alone: QWENDESK_XINFERENCE_FORK=0 keeps only the import diet, and
QWENDESK_XINFERENCE_TRACE=1 logs a stack for every import of torch or transformers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SITE = Path(__file__).resolve().parent / "site"
SWITCHES = ("QWENDESK_XINFERENCE_LIGHT", "QWENDESK_XINFERENCE_FORK")


def enabled(base: Mapping[str, str]) -> bool:
    return base.get("QWENDESK_XINFERENCE_LIGHT", "1").strip().lower() not in ("0", "false", "no", "off")


def environment(base: Mapping[str, str]) -> dict[str, str]:
    """Variables to add to the embedded Xinference's environment: our site folder first on PYTHONPATH."""
    if not enabled(base):
        return {"QWENDESK_XINFERENCE_LIGHT": "0"}
    paths = [str(SITE), *[p for p in base.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(SITE)]]
    return {"PYTHONPATH": os.pathsep.join(paths), "QWENDESK_XINFERENCE_LIGHT": "1"}
