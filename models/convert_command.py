"""CLI commands `qwendesk convert` and `qwendesk quantize` (registered by models.commands.register)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .convert_output import CONVERT_TYPES, DIRECT_TYPES, QUANT_TYPES
from .progress import ProgressBars

_TYPE_SUFFIX = re.compile(r"[-.](fp?32|fp?16|bf16|q\d(_\d|_k(_[sml])?)?)$", re.IGNORECASE)
LANDED = "The daemon registers files in the models folder by itself; the model is ready to start"
USES = {"chat": " and chat.", "embedding": " and serve embeddings.", "rerank": " and rerank documents."}


def add_convert(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="Convert a Hugging Face Qwen2 / Qwen2.5 / Qwen3 chat checkpoint or a BERT embedding model or "
        "reranker into a GGUF in the models folder.",
        description="Convert HF_DIR (config.json, *.safetensors, tokenizer.json, tokenizer_config.json; for "
        "sentence-transformers models also modules.json and 1_Pooling/) into a GGUF, tensor by tensor. "
        "f16/bf16/f32/q8_0 need nothing else; q4_0, q4_k_m and q5_k_m use llama.cpp's quantizer "
        "(pip install 'qwendesk[convert]').",
    )
    parser.add_argument("hf_dir", type=Path, metavar="HF_DIR", help="Folder of the Hugging Face checkpoint.")
    parser.add_argument(
        "--out", type=Path, help="Output file (default: <models folder>/<HF_DIR name>-<type>.gguf)."
    )
    parser.add_argument(
        "--quantize", choices=CONVERT_TYPES, default="f16", help="Output type (default: f16)."
    )
    parser.add_argument("--force", action="store_true", help="Replace --out if it exists.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.add_argument("--verbose", action="store_true", help="Show llama.cpp's quantizer log.")
    parser.set_defaults(func=convert_command)


def add_quantize(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="Quantize an f16/f32 GGUF with llama.cpp's quantizer (needs qwendesk[convert]).",
        description="Quantize IN into OUT with llama.cpp (llama-cpp-python, pip install 'qwendesk[convert]').",
    )
    parser.add_argument("src", type=Path, metavar="IN", help="An f16, bf16 or f32 GGUF.")
    parser.add_argument(
        "out",
        type=Path,
        metavar="OUT",
        nargs="?",
        help="Output file (default: <models folder>/<IN name>-<type>.gguf).",
    )
    parser.add_argument(
        "--type", dest="qtype", choices=QUANT_TYPES, default="q4_k_m", help="Default: q4_k_m."
    )
    parser.add_argument("--force", action="store_true", help="Replace OUT if it exists.")
    parser.add_argument("--allow-requantize", action="store_true", help="Quantize an already quantized file.")
    parser.add_argument("--threads", type=int, default=0, help="Quantizer threads (default: all cores).")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.add_argument("--verbose", action="store_true", help="Show llama.cpp's quantizer log.")
    parser.set_defaults(func=quantize_command)


def default_output(settings: Any, stem: str, qtype: str) -> Path:
    """`<first models folder>/<stem without a type suffix>-<type>.gguf`."""
    return settings.model_folders[0] / f"{_TYPE_SUFFIX.sub('', stem)}-{qtype}.gguf"


@contextmanager
def progress_bar(quiet: bool) -> Iterator[ProgressBars | None]:
    """Progress bars for the steps of a conversion (none when quiet)."""
    if quiet:
        yield None
        return
    with ProgressBars(speed=False) as bars:
        yield bars


def convert_command(args: argparse.Namespace, settings: Any) -> int:
    from .convert import convert_checkpoint

    out = args.out or default_output(settings, Path(args.hf_dir).resolve().name, args.quantize)
    with progress_bar(args.quiet) as bar:
        result = convert_checkpoint(
            args.hf_dir,
            out,
            args.quantize,
            force=args.force,
            progress=bar.step("converting") if bar else None,
            quantize_progress=bar.step("quantizing") if bar and args.quantize not in DIRECT_TYPES else None,
            verbose=args.verbose,
        )
    for warning in result.warnings:
        print(f"warning: {warning}")
    print(
        f"Converted {Path(args.hf_dir).name} ({result.n_params:,} parameters, {result.out_type}) to {result.path}"
    )
    if result.path.parent.resolve() in settings.model_folders:
        print(LANDED + USES.get(result.kind, "."))
    return 0


def quantize_command(args: argparse.Namespace, settings: Any) -> int:
    from .quantize import quantize_gguf

    out = args.out or default_output(settings, args.src.stem, args.qtype)
    with progress_bar(args.quiet) as bar:
        quantize_gguf(
            args.src,
            out,
            args.qtype,
            force=args.force,
            allow_requantize=args.allow_requantize,
            threads=args.threads,
            progress=bar.step(f"quantizing to {args.qtype}") if bar else None,
            verbose=args.verbose,
        )
    size = out.stat().st_size / 1024**2
    print(f"Quantized {args.src.name} to {args.qtype}: {out} ({size:.1f} MiB)")
    if out.parent.resolve() in settings.model_folders:
        print(LANDED + ".")
    return 0
