"""CLI commands of qwendesk.models: `catalog` and `pull` (and, from a teammate, `convert` and `quantize`).

Each command is one `add_<command>(subparsers)` that builds its parser and one `<command>_command(args, settings)`
handler returning an exit code; failures raise QwendeskError and the CLI prints the message.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from typing import Any

from .catalog import estimate_memory, fits, human_size, load_catalog
from .convert_command import add_convert, add_quantize


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add every models/ command to the `qwendesk` CLI."""
    add_catalog(subparsers)
    add_pull(subparsers)
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


# ---- pull ----------------------------------------------------------------------------------------
def add_pull(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pull",
        help="Download a Qwen GGUF from the catalog into the models folder (resumable).",
        description="Download NAME (see `qwendesk catalog`) into the first models folder. An interrupted pull "
        "(Ctrl-C, lost network) resumes where it stopped when you run it again.",
    )
    parser.add_argument("name", help="Catalog name, e.g. qwen2.5:1.5b-instruct-q4_k_m or qwen3:4b.")
    parser.add_argument("--quiet", action="store_true", help="No progress bar.")
    parser.set_defaults(func=pull_command)


def pull_command(args: argparse.Namespace, settings: Any) -> int:
    from .download import pull

    bar = None if args.quiet else _ProgressBar()
    try:
        with bar or contextlib.nullcontext():
            result = pull(args.name, settings, on_progress=bar.update if bar else None)
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. The partial download is kept; run `qwendesk pull {args.name}` again to resume."
        )
        return 130
    if result.already_present:
        print(f"{result.release.name} is already in {result.path.parent}: {result.path.name}")
    else:
        print(f"Pulled {result.release.name} ({human_size(result.downloaded)} downloaded) to {result.path}")
    print("The daemon registers files in the models folder by itself; the model is ready to start and chat.")
    return 0


class _ProgressBar:
    """A rich progress bar per file: bytes, speed and ETA; a second bar for the checksum pass."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self._tasks: dict[tuple[str, str], Any] = {}

    def __enter__(self) -> _ProgressBar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, event: Any) -> None:
        key = (event.file, event.phase)
        if key not in self._tasks:
            label = f"[{event.file_index}/{event.file_count}] {event.file}"
            label = label if event.phase == "download" else f"verifying {event.file}"
            self._tasks[key] = self._progress.add_task(label, total=event.total or None, completed=event.done)
        self._progress.update(self._tasks[key], completed=event.done, total=event.total or None)
