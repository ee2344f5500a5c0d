"""`qwendesk docs` (collections: list, add, remove, search) and `qwendesk ask` (a question, answered from the
documents with its sources). They talk to the daemon through DaemonClient."""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import sys
import threading
from collections.abc import Iterator
from typing import Any

from .client import DaemonClient
from .config import Settings
from .errors import QwendeskError

PROBLEM_LIMIT = 20  # per-file problems printed by `qwendesk docs`


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `docs` and `ask` to the `qwendesk` CLI."""
    docs = subparsers.add_parser(
        "docs",
        help="document collections: list them, add or remove a folder, search one",
        description="Folders of documents the daemon indexes and keeps up to date. Without a sub-command: "
        "list the collections (files, chunks, state, progress, problems).",
    )
    docs.set_defaults(func=cmd_docs_list)
    sub = docs.add_subparsers(dest="docs_command", metavar="COMMAND")

    add = sub.add_parser("add", help="index a folder as a collection (its files are never changed)")
    add.add_argument("path", help="the folder")
    add.add_argument("--name", help="name of the collection (default: the folder's name)")
    add.add_argument("--no-wait", action="store_true", help="return at once; indexing goes on in the daemon")
    add.set_defaults(func=cmd_docs_add)

    remove = sub.add_parser("remove", help="forget a collection's index (the folder and its files stay)")
    remove.add_argument("name")
    remove.set_defaults(func=cmd_docs_remove)

    search = sub.add_parser("search", help="the passages of a collection that best answer a query")
    search.add_argument("name", help="the collection")
    search.add_argument("query", nargs="+")
    search.add_argument("-k", type=int, default=5, help="how many passages (default 5)")
    search.set_defaults(func=cmd_docs_search)

    ask = subparsers.add_parser(
        "ask",
        help="ask a question; with --docs, answered from those collections with its sources",
        description="Stream a chat model's answer to QUESTION. With --docs the answer comes from the named "
        "document collections and ends with the sources it cites.",
    )
    ask.add_argument("question", nargs="+")
    ask.add_argument(
        "--docs", action="append", default=[], metavar="NAME", help="a collection to answer from (repeatable)"
    )
    ask.add_argument("--model", help="the chat model (default: one that runs, else the first chat model)")
    ask.set_defaults(func=cmd_ask)


def _client(settings: Settings) -> DaemonClient:
    return DaemonClient.from_settings(settings, timeout=150)


# ---- printing ----------------------------------------------------------------------------------------
def state_text(c: dict[str, Any]) -> str:
    """`ready`, `indexing 40/120 files`, `embedding 300/900 chunks`, `error`."""
    progress = c.get("progress") or {}
    if c.get("state") == "embedding" and progress.get("chunks_total"):
        return f"embedding {progress.get('chunks_done', 0)}/{progress['chunks_total']} chunks"
    if c.get("state") == "indexing" and progress.get("files_total"):
        return f"indexing {progress.get('files_done', 0)}/{progress['files_total']} files"
    return str(c.get("state") or "?")


def where(hit: dict[str, Any]) -> str:
    """`notes/keys.md · Backup > Keys` or `manual.pdf · page 3`."""
    parts = [str(hit.get("path"))]
    if hit.get("page"):
        parts.append(f"page {hit['page']}")
    if hit.get("heading"):
        parts.append(str(hit["heading"]))
    return " · ".join(parts)


def snippet(text: str, limit: int = 240) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1].rstrip() + "…"


def print_collections(listing: dict[str, Any]) -> None:
    rows = listing.get("collections") or []
    print(f"{'NAME':<20} {'FILES':>6} {'CHUNKS':>7} {'PROBLEMS':>8}  {'STATE':<26} {'SEARCH':<9} FOLDER")
    for c in rows:
        problems = int(c.get("errors") or 0) + int(c.get("skipped") or 0)
        print(
            f"{c['name']:<20} {c.get('files', 0):>6} {c.get('chunks', 0):>7} {problems:>8}  "
            f"{state_text(c):<26} {c.get('search', '?'):<9} {c.get('folder')}"
        )
    for c in rows:
        if c.get("last_error"):
            print(f"\n{c['name']}: {c['last_error']}")
        listed = c.get("problems") or []
        if listed:
            print(f"\n{c['name']}: files not indexed")
            for p in listed[:PROBLEM_LIMIT]:
                print(f"  {p['path']}: {p['state']}: {p.get('reason')}")
            if len(listed) > PROBLEM_LIMIT:
                print(f"  … and {len(listed) - PROBLEM_LIMIT} more")
        if c.get("note") and c["note"] != listing.get("note"):
            print(f"\n{c['name']}: {c['note']}")
    if listing.get("note"):
        print(f"\n{listing['note']}")


# ---- handlers ----------------------------------------------------------------------------------------
def cmd_docs_list(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        print_collections(client.collections())
    return 0


def _follow(client: DaemonClient) -> tuple[queue.Queue[tuple[str, dict[str, Any]] | None], threading.Event]:
    """Events of /api/events on a thread (into a queue); the Event is set once the stream is open."""
    events: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
    opened = threading.Event()

    def run() -> None:
        try:
            for event, data in client.events():
                opened.set()
                events.put((event, data))
        except QwendeskError:
            pass
        finally:
            opened.set()
            events.put(None)

    threading.Thread(target=run, name="qwendesk-docs-events", daemon=True).start()
    return events, opened


def _until_synced(events: queue.Queue[tuple[str, dict[str, Any]] | None], name: str) -> Iterator[dict]:
    """Progress events of collection `name` until its sync has ended; the last one is its status."""
    while True:
        item = events.get()
        if item is None:
            raise QwendeskError(
                "The daemon closed the event stream before indexing ended: see `qwendesk docs`."
            )
        event, data = item
        if data.get("collection") == name and event == "indexing":
            yield data
        elif event == "collection" and data.get("name") == name and data.get("state") in ("ready", "error"):
            yield data
            return


def cmd_docs_add(args: argparse.Namespace, settings: Settings) -> int:
    path = os.path.abspath(os.path.expanduser(args.path))
    events_client = _client(settings)
    try:
        with _client(settings) as client:
            events, opened = (None, None) if args.no_wait else _follow(events_client)
            if opened is not None:
                opened.wait(15)  # subscribed before the add: no event of its indexing is missed
            added = client.add_collection(path, args.name)
            name = added["name"]
            print(f"Added collection {name}: {added['folder']}")
            if events is None:
                print("It is being indexed in the background: `qwendesk docs` shows its progress.")
                return 0
            status = _show_progress(_until_synced(events, name))
            listing = client.collections()
    except KeyboardInterrupt:
        print("\nIndexing goes on in the daemon: `qwendesk docs` shows its progress.")
        return 130
    finally:
        events_client.close()
    done = next((c for c in listing["collections"] if c["name"] == name), status)
    print(
        f"{name}: {done.get('files', 0)} files, {done.get('chunks', 0)} chunks"
        f" ({int(done.get('errors') or 0) + int(done.get('skipped') or 0)} not indexed: `qwendesk docs`)."
    )
    if done.get("last_error"):
        print(f"{name}: {done['last_error']}")
    if done.get("note"):
        print(done["note"])
    return 0


def _show_progress(updates: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """A terminal bar per phase (files, then chunks to embed); returns the final status."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bars: dict[str, Any] = {}
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
    last: dict[str, Any] = {}
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        for update in updates:
            last = update
            phase = update.get("phase")
            if phase == "index" and update.get("files_total"):
                key, done, total, label = (
                    "files",
                    update["files_done"],
                    update["files_total"],
                    "indexing files",
                )
            elif phase == "embed" and update.get("chunks_total"):
                key, done, total = "chunks", update["chunks_done"], update["chunks_total"]
                label = "embedding chunks"
            else:
                continue
            if key not in bars:
                bars[key] = progress.add_task(label, total=total)
            progress.update(bars[key], completed=done, total=total)
        for task in bars.values():  # the final messages say "done" without numbers
            total = progress.tasks[task].total
            progress.update(task, completed=total)
    return last


def cmd_docs_remove(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        client.remove_collection(args.name)
    print(f"Removed collection {args.name}; its folder and files are untouched.")
    return 0


def cmd_docs_search(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        result = client.search_collection(args.name, " ".join(args.query), args.k)
    hits = result.get("results") or []
    if not hits:
        print("Nothing found.")
    for i, hit in enumerate(hits, start=1):
        print(f"[{i}] {where(hit)}  (score {hit.get('score', 0):.3g})")
        print(f"    {snippet(hit.get('text', ''))}")
    if result.get("note"):
        print(f"\nnote: {result['note']}", file=sys.stderr)
    return 0


def pick_chat_model(models: list[dict[str, Any]]) -> str:
    """A running chat model, else the first chat model by name."""
    chat = [m for m in models if "chat" in (m.get("abilities") or []) and m.get("state") != "error"]
    running = [m for m in chat if m.get("state") == "running"]
    chosen = running or sorted(chat, key=lambda m: m["name"])
    if not chosen:
        raise QwendeskError(
            "There is no chat model in the models folders: pull one (`qwendesk catalog` lists them) or add a "
            "GGUF with `qwendesk add FILE`."
        )
    return chosen[0]["name"]


def cmd_ask(args: argparse.Namespace, settings: Settings) -> int:
    names = [n.strip() for value in args.docs for n in value.split(",") if n.strip()]
    question = " ".join(args.question)
    with _client(settings) as client:
        models = client.models()
        model = args.model or pick_chat_model(models)
        if next((m.get("state") for m in models if m["name"] == model), None) != "running":
            print(f"(starting {model}…)", file=sys.stderr, flush=True)
        body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": question}]}
        if names:
            body["collections"] = names
        extra: dict[str, Any] = {}
        with contextlib.suppress(BrokenPipeError):
            for chunk in client.chat_stream(body):
                if "citations" in chunk:
                    extra = chunk
                for choice in chunk.get("choices") or []:
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        print(text, end="", flush=True)
            print()
    retrieval = extra.get("retrieval") or {}
    if retrieval.get("note"):
        print(f"note: {retrieval['note']}", file=sys.stderr)
    citations = extra.get("citations") or []
    if names and citations:
        print("\nSources:")
        for c in citations:
            print(f"  [{c['index']}] {c.get('collection')}: {where(c)}")
    elif names:
        print("\n(no passage of the documents matched)", file=sys.stderr)
    return 0
