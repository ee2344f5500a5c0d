"""Quantize a GGUF with llama.cpp's own quantizer (llama-cpp-python, the optional `qwendesk[convert]` extra)."""

from __future__ import annotations

import ctypes
import logging
import shutil
import threading
from pathlib import Path
from types import ModuleType

from gguf import GGMLQuantizationType, GGUFReader, LlamaFileType

from .convert_output import QUANT_TYPES as QUANT_TYPE_NAMES
from .convert_output import ProgressFn
from .errors import BadRequest, MissingDependency, ModelFileError, NotEnoughSpace
from .files import atomic_output, ensure_free_space, human_size, refuse_existing

# CLI name -> llama_ftype (gguf's LlamaFileType mirrors llama.h, so no llama_cpp import is needed here).
QUANT_TYPES = {
    "q4_0": LlamaFileType.MOSTLY_Q4_0,
    "q4_k_m": LlamaFileType.MOSTLY_Q4_K_M,
    "q5_k_m": LlamaFileType.MOSTLY_Q5_K_M,
    "q8_0": LlamaFileType.MOSTLY_Q8_0,
}
assert tuple(QUANT_TYPES) == QUANT_TYPE_NAMES
# Upper bounds of output size / f16 size, for the disk-space check (embeddings may stay at 6 bits).
SIZE_BOUND = {"q4_0": 0.45, "q4_k_m": 0.5, "q5_k_m": 0.55, "q8_0": 0.6}
SOURCE_TYPES = {GGMLQuantizationType.F32, GGMLQuantizationType.F16, GGMLQuantizationType.BF16}
SPACE_HINT = "Free up space or choose an --out on another disk."
INSTALL_HINT = "Install the convert extra: pip install 'qwendesk[convert]' (builds llama-cpp-python)."


def load_llama_cpp() -> ModuleType:
    """Import llama_cpp only when quantizing: it is optional and heavy."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise MissingDependency(
            f"Quantizing needs llama.cpp's quantizer, which is not installed. {INSTALL_HINT}"
        ) from exc
    return llama_cpp


def source_info(src: Path) -> tuple[int, bool]:
    """Size of `src`'s tensors in f16 and whether it is already quantized (requantizing loses quality)."""
    if not src.is_file():
        raise ModelFileError(f"{src} does not exist. Give the path of a .gguf file to quantize.")
    try:
        reader = GGUFReader(src)
    except Exception as exc:  # gguf raises ValueError/struct errors of several kinds on bad files
        raise ModelFileError(f"{src} is not a readable GGUF file ({exc}).") from exc
    f16_bytes = sum(int(t.n_elements) * 2 for t in reader.tensors)
    quantized = any(t.tensor_type not in SOURCE_TYPES for t in reader.tensors if len(t.shape) > 1)
    return f16_bytes, quantized


def _run(
    llama_cpp: ModuleType,
    src: Path,
    dst: Path,
    ftype: int,
    allow_requantize: bool,
    threads: int,
    verbose: bool,
) -> int:
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(ftype)
    params.nthread = threads
    params.allow_requantize = allow_requantize
    # llama-cpp-python prints llama.cpp's log (a line per tensor) unless its logger is above INFO.
    llama_log = logging.getLogger("llama-cpp-python")
    level = llama_log.level
    llama_log.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        return int(llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params)))
    finally:
        llama_log.setLevel(level)


def run_quantizer(
    src: Path,
    dst: Path,
    ftype: int,
    *,
    allow_requantize: bool,
    threads: int,
    expected: int,
    progress: ProgressFn | None,
    verbose: bool = False,
) -> None:
    """Call llama_model_quantize in a thread; report progress as the output file grows toward `expected`."""
    llama_cpp = load_llama_cpp()
    result: list[int | BaseException] = []

    def work() -> None:
        try:
            result.append(_run(llama_cpp, src, dst, ftype, allow_requantize, threads, verbose))
        except BaseException as exc:  # re-raised in the caller's thread
            result.append(exc)

    thread = threading.Thread(target=work, name="llama-quantize", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.25)
        if progress:
            size = dst.stat().st_size if dst.exists() else 0
            progress(min(size, expected), expected, dst.name)
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    if outcome != 0:
        # llama.cpp drops the errno: a write that stopped where the disk ran out is a full disk.
        written = dst.stat().st_size if dst.exists() else 0
        if shutil.disk_usage(dst.parent).free < expected - written:
            raise NotEnoughSpace(
                f"The disk filled up while quantizing {src.name}: the partial output was deleted. Free up "
                f"about {human_size(expected - written)} or choose an --out on another disk, then try again."
            )
        raise ModelFileError(
            f"llama.cpp could not quantize {src} (error {outcome}); its error is printed above "
            "(--verbose shows the whole log). Check that llama.cpp supports the model's architecture."
        )
    if progress:
        progress(expected, expected, "done")


def quantize_gguf(
    src: Path,
    out: Path,
    qtype: str,
    *,
    force: bool = False,
    allow_requantize: bool = False,
    threads: int = 0,
    progress: ProgressFn | None = None,
    verbose: bool = False,
) -> Path:
    """Quantize `src` into `out` (written as out.part, renamed when complete) with llama.cpp."""
    src, out = Path(src), Path(out)
    if qtype not in QUANT_TYPES:
        raise BadRequest(f"Unknown quantization {qtype!r}; choose one of {', '.join(QUANT_TYPES)}.")
    if src.resolve() == out.resolve():
        raise BadRequest("The output must be a different file than the input; choose another OUT.")
    f16_bytes, quantized = source_info(src)
    refuse_existing(out, force=force)
    if quantized and not allow_requantize:
        raise ModelFileError(
            f"{src.name} is already quantized; quantizing it again loses quality. Quantize the f16/f32 GGUF "
            "(qwendesk convert ... --quantize f16), or pass --allow-requantize."
        )
    load_llama_cpp()  # fail fast, before the space check and the temp file
    expected = int(f16_bytes * SIZE_BOUND[qtype])
    ensure_free_space(out.parent, expected, f"quantizing {src.name} to {qtype}", hint=SPACE_HINT)
    with atomic_output(out, force=force) as part:
        run_quantizer(
            src,
            part,
            QUANT_TYPES[qtype],
            allow_requantize=allow_requantize,
            threads=threads,
            expected=expected,
            progress=progress,
            verbose=verbose,
        )
    return out
