"""CLI commands that work without a daemon: `catalog`, `convert` and `quantize` (`pull` goes through the daemon).

Each command is one `add_<command>(subparsers)` that builds its parser and one `<command>_command(args, settings)`
handler returning an exit code; failures raise QwendeskError and the CLI prints the message.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from .catalog import estimate_memory, fits, load_catalog
from .convert_command import add_convert, add_quantize
from .files import human_size


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add every models/ command to the `qwendesk` CLI."""
    add_catalog(subparsers)
    add_convert(subparsers)  # convert / quantize live in convert_command.py
    add_quantize(subparsers)


# ---- catalog -------------------------------------------------------------------------------------
def add_catalog(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="List the Qwen GGUF models `qwendesk pull` can download, with sizes and memory fit.",
        description="Qwen GGUF models you can pull. FITS is an estimate: file size x 1.2 plus the KV cache "
        "for n_ctx tokens, compared with the RAM available now.",
    )
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    parser.set_defaults(func=catalog_command)


def catalog_rows(settings: Any, available: int) -> list[dict[str, Any]]:
    """One row per pullable release: name, size, estimated memory, fits, default, kind, repos."""
    catalog = load_catalog(getattr(settings, "catalog_file", None))
    rows = []
    for release in catalog.releases():
        rows.append(
            {
                "name": release.name,
                "title": release.model.title,
                "kind": release.model.kind,
                "quantization": release.quant.key,
                "default": release.is_default,
                "size": release.size,
                "memory_estimate": estimate_memory(release, settings.n_ctx),
                "fits": fits(release, settings.n_ctx, available),
                "files": [f.file for f in release.files],
                "repo": release.model.repo(settings.catalog_source),
            }
        )
    return rows


def catalog_command(args: argparse.Namespace, settings: Any) -> int:
    import psutil

    available = psutil.virtual_memory().available
    rows = catalog_rows(settings, available)
    if args.json:
        print(json.dumps({"available_memory": available, "n_ctx": settings.n_ctx, "models": rows}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Qwen GGUF catalog (source: {settings.catalog_source})", title_justify="left")
    for column in ("NAME", "SIZE", "MEMORY (est.)", "FITS", "KIND"):
        table.add_column(column, justify="right" if column in ("SIZE", "MEMORY (est.)") else "left")
    for row in rows:
        name = row["name"] + (" *" if row["default"] else "")
        fit = "[green]yes[/green]" if row["fits"] else "[red]no[/red]"
        table.add_row(name, human_size(row["size"]), human_size(row["memory_estimate"]), fit, row["kind"])
    console = Console()
    console.print(table)
    console.print(
        f"* default quantization (pull it by the short name, e.g. qwen2.5:1.5b-instruct). "
        f"FITS compares an estimate (size x 1.2 + KV cache for n_ctx={settings.n_ctx}) with "
        f"{human_size(available)} of RAM available now."
    )
    return 0
