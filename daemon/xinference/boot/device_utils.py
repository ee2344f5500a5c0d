"""Stand-in for `xinference.device_utils` where no accelerator but Metal can be present (loaded by light.py).

The real module imports torch at module level (0.9-1.8 s, ~200 MiB per process, measured with
`python -X importtime`), and builds a device table of torch dtypes, to answer questions whose answers on
such a machine follow from devices.py. Those answers are given here, identical to the real module's
(xinference 4.1.0). Everything else (dtypes, NVML queries, the device table), and on macOS everything that
depends on torch's MPS check, is taken from the real module, imported on first use.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import logging
import sys
import threading
from types import ModuleType
from typing import Any, Literal

from _qwendesk_boot import devices

logger = logging.getLogger(__name__)

DeviceType = Literal["cuda", "mps", "xpu", "vacc", "npu", "mlu", "musa", "gcu", "rocm", "cpu"]

MODE = devices.torch_free()  # "cpu" or "darwin" (light.py loads this module only then)
_real_module: ModuleType | None = None
_real_lock = threading.Lock()


def _real() -> ModuleType:
    """The real xinference.device_utils (imports torch), loaded once beside this stand-in."""
    global _real_module
    with _real_lock:
        if _real_module is None:
            import xinference

            spec = importlib.machinery.PathFinder.find_spec(__name__, xinference.__path__)
            if spec is None or spec.loader is None:
                raise ImportError(f"the real {__name__} was not found")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _real_module = module
            import traceback

            logger.info(
                "qwendesk light mode: importing the real %s (and torch) for:\n%s",
                __name__,
                "".join(traceback.format_stack(limit=8)[:-2]),
            )
    return _real_module


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_real(), name)


def _from_real(name: str) -> Any:
    """A function of the real module, imported when first called (so `from device_utils import f` stays
    cheap for functions a llama.cpp model never calls)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(_real(), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


# Functions that need torch, NVML or the device table: the real module answers them.
get_device_preferred_dtype = _from_real("get_device_preferred_dtype")
is_hf_accelerate_supported = _from_real("is_hf_accelerate_supported")
get_nvidia_gpu_info = _from_real("get_nvidia_gpu_info")
get_metax_gpu_info = _from_real("get_metax_gpu_info")
get_rocm_gpu_info = _from_real("get_rocm_gpu_info")
get_gcu_info = _from_real("get_gcu_info")
get_npu_info = _from_real("get_npu_info")
get_per_process_gpu_memory = _from_real("get_per_process_gpu_memory")
get_mac_address = _from_real("get_mac_address")


def _torch_imported() -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and type(torch) is ModuleType


# ---- answers that do not depend on torch here ---------------------------------------------------------
def is_metax_available() -> bool:
    return False


def is_rocm_available() -> bool:
    return False


def is_cuda_available() -> bool:
    return False


def is_xpu_available() -> bool:
    return False


def is_npu_available() -> bool:
    return False


def is_mlu_available() -> bool:
    return False


def is_vacc_available() -> bool:
    return False


def is_musa_available() -> bool:
    return False


def is_gcu_available() -> bool:
    return False


def get_available_device_env_name() -> str | None:
    return None  # CPU has no device table entry; the MPS entry has no visible-devices variable


def gpu_count() -> int:
    return 0  # MPS counts no devices (device_count_fn returns 0)


def get_gpu_info() -> dict[str, Any]:
    return {}  # MPS reports an empty dict, as does CPU


# ---- answers that depend on MPS on macOS --------------------------------------------------------------
def is_mps_available() -> bool:
    return False if MODE == "cpu" else _real().is_mps_available()


def get_available_device() -> DeviceType:
    return "cpu" if MODE == "cpu" else _real().get_available_device()


def is_device_available(device: str) -> bool:
    if device == "cpu":
        return True
    if MODE == "cpu" or device != "mps":
        return False
    return _real().is_device_available(device)


def move_model_to_available_device(model: Any) -> Any:
    return model if MODE == "cpu" else _real().move_model_to_available_device(model)


def empty_cache() -> None:
    # Only torch's MPS cache is ever emptied here; before torch is imported it holds nothing.
    if MODE == "cpu" or not _torch_imported():
        return None
    return _real().empty_cache()
