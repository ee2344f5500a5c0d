"""The `qwendesk` command. Commands that act on models talk to the daemon through DaemonClient; `serve` is
the daemon, and `catalog`, `convert`, `quantize` (from qwendesk.models) work on files without it."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points, version
from typing import Any

from qwendesk.models.commands import register as register_model_commands

from . import config
from .client import DaemonClient
from .commands_documents import register as register_documents_commands
from .config import Settings
from .errors import QwendeskError

Handler = Callable[[argparse.Namespace, Settings], int]

# Settings `serve` accepts as flags; the global ones (--home, --port, --token) work with every command.
GLOBAL_SETTINGS = ("home", "port", "token")


def _add_setting_flags(parser: argparse.ArgumentParser, names: Sequence[str], default: Any = None) -> None:
    """One flag per setting, generated from config.Settings (type, help, env variable)."""
    for name in names:
        field = config.FIELDS[name]
        help_text = f"{field.description} [{config.env_name(name)}]"
        kwargs: dict[str, Any] = {"dest": name, "default": default, "help": help_text}
        if config.is_bool(name):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif config.is_list(name):
            kwargs["action"] = "append"
        parser.add_argument(config.flag_name(name), **kwargs)


def _settings_epilog() -> str:
    rows = [f"  {r['env']:<32} {r['flag']:<24} {r['help']}" for r in config.describe()]
    return "settings (defaults < config.toml < environment < flags):\n" + "\n".join(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qwendesk",
        description="A private AI assistant: local Qwen GGUF models behind an OpenAI-compatible API.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"qwendesk {version('qwendesk')}")
    _add_setting_flags(parser, GLOBAL_SETTINGS)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon in the foreground")
    _add_setting_flags(serve, [n for n in config.FIELDS if n not in GLOBAL_SETTINGS])
    serve.set_defaults(func=cmd_serve)

    run = sub.add_parser(
        "run", help="run the app: the tray (which starts the daemon); the daemon alone without a display"
    )
    run.set_defaults(func=cmd_run, choices=sub.choices)
    sub.add_parser("status", help="daemon, Xinference and accelerator status").set_defaults(func=cmd_status)
    sub.add_parser("models", help="list the models in the models folders").set_defaults(func=cmd_models)

    start = sub.add_parser("start", help="start a model")
    start.add_argument("name")
    start.add_argument("--n-ctx", type=int, help="context per request (tokens)")
    start.add_argument("--n-gpu-layers", type=int, help="layers to offload to the GPU")
    start.add_argument("--n-parallel", type=int, help="requests served at once")
    start.set_defaults(func=cmd_start)

    stop = sub.add_parser("stop", help="stop a model")
    stop.add_argument("name")
    stop.set_defaults(func=cmd_stop)

    add = sub.add_parser("add", help="copy a GGUF file into the models folder")
    add.add_argument("path")
    add.set_defaults(func=cmd_add)

    pull = sub.add_parser(
        "pull",
        help="download a Qwen GGUF from the catalog into the models folder (resumable)",
        description="Download NAME (see `qwendesk catalog`) into the first models folder, through the daemon. "
        "An interrupted pull (Ctrl-C, lost network) resumes where it stopped when you run it again.",
    )
    pull.add_argument("name", help="catalog name, e.g. qwen2.5:1.5b-instruct-q4_k_m or qwen3:4b")
    pull.add_argument("--quiet", action="store_true", help="no progress bars")
    pull.set_defaults(func=cmd_pull)

    path = sub.add_parser("path", help="print a qwendesk folder")
    path.add_argument("which", choices=["models", "home", "config", "logs", "documents"])
    path.set_defaults(func=cmd_path)

    sub.add_parser("shutdown", help="stop the daemon, Xinference and every model").set_defaults(
        func=cmd_shutdown
    )

    register_model_commands(sub)
    register_documents_commands(sub)
    for ep in entry_points(group="qwendesk.commands"):
        try:
            ep.load()(sub)
        except ImportError as exc:  # an optional part (e.g. the tray without pystray) is not installed
            sub.add_parser(ep.name, help=f"(unavailable: {exc})").set_defaults(
                func=_unavailable(ep.name, exc)
            )
    # Global flags also work after the command (`qwendesk serve --port N`); SUPPRESS keeps the earlier value.
    for command in sub.choices.values():
        _add_setting_flags(
            command,
            [n for n in GLOBAL_SETTINGS if config.flag_name(n) not in command._option_string_actions],
            default=argparse.SUPPRESS,
        )
    return parser


def _unavailable(name: str, exc: Exception) -> Handler:
    def handler(args: argparse.Namespace, settings: Settings) -> int:
        raise QwendeskError(f"`qwendesk {name}` is not available: {exc}. Install qwendesk[tray].")

    return handler


# ---- handlers ----------------------------------------------------------------------------------------
def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .server import serve

    return serve(settings)


def has_display() -> bool:
    """A desktop session the tray can show an icon in."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    tray = args.choices.get("tray")
    if has_display() and tray is not None:
        return tray.get_default("func")(args, settings)
    print("No display found: running the daemon alone (no tray icon).", file=sys.stderr)
    return cmd_serve(args, settings)


def _client(settings: Settings) -> DaemonClient:
    return DaemonClient.from_settings(settings)


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        st = client.status()
    sup, acc, mem = st["supervisor"], st["accelerator"], st["memory"]
    print(f"qwendesk {st['version']} at {settings.url}")
    print(
        f"xinference: {sup['state']} ({sup['mode']}{', ' + sup['endpoint'] if sup.get('endpoint') else ''})"
    )
    if sup.get("error"):
        print(f"  error: {sup['error']}")
    print(f"accelerator: {acc['name']}")
    print(f"memory: {mem['available_bytes'] / 2**30:.1f} GiB free of {mem['total_bytes'] / 2**30:.1f} GiB")
    print(f"models: {st['models']} ({st['running']} running) in {', '.join(st['models_dirs'])}")
    return 0


def _size(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        models = client.models()
    if not models:
        print(f"No models yet. Put *.gguf files in {settings.model_folders[0]} or run `qwendesk pull NAME`.")
        return 0
    print(f"{'NAME':<40} {'ARCH':<10} {'PARAMS':<8} {'QUANT':<8} {'SIZE':>9}  STATE")
    for m in models:
        state = m["state"] + (f": {m['error']}" if m.get("error") else "")
        print(
            f"{m['name']:<40} {m.get('architecture') or '-':<10} {m.get('parameters') or '-':<8} "
            f"{m.get('quantization') or '-':<8} {_size(m['size_bytes']):>9}  {state}"
        )
    return 0


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        m = client.start(
            args.name, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, n_parallel=args.n_parallel
        )
    context = f" (context {m['n_ctx']} tokens)" if m.get("n_ctx") else ""
    print(f"{m['name']} is {m['state']}{context}. Use it at {settings.url}/v1")
    return 0


def cmd_stop(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        m = client.stop(args.name)
    print(f"{m['name']} is {m['state']}.")
    return 0


def cmd_add(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        m = client.add(os.path.abspath(args.path))
    print(f"Added {m['name']} ({m['state']}{': ' + m['error'] if m.get('error') else ''}).")
    return 0


def cmd_pull(args: argparse.Namespace, settings: Settings) -> int:
    from qwendesk.models.files import human_size
    from qwendesk.models.progress import ProgressBars

    done: dict[str, Any] = {}
    try:
        with _client(settings) as client, contextlib.ExitStack() as stack:
            bars = None if args.quiet else stack.enter_context(ProgressBars())
            for event, data in client.pull(args.name):
                if event == "progress" and bars is not None:
                    label = f"[{data['file_index']}/{data['file_count']}] {data['file']}"
                    label = label if data["phase"] == "download" else f"verifying {data['file']}"
                    bars.update((data["file"], data["phase"]), label, data["done"], data["total"])
                elif event == "error":
                    raise QwendeskError.from_code(data.get("code", "internal_error"), data["error"])
                elif event == "done":
                    done = data
    except KeyboardInterrupt:
        print(
            f"\nInterrupted. The partial download is kept; run `qwendesk pull {args.name}` again to resume."
        )
        return 130
    if not done:
        raise QwendeskError(
            "The daemon closed the pull without finishing it; see the daemon log and try again."
        )
    if done["already_present"]:
        print(f"{done['model']} is already in the models folder: {done['path']}")
    else:
        print(f"Pulled {done['model']} ({human_size(done['downloaded'])} downloaded) to {done['path']}")
    print("It is listed by `qwendesk models` and ready to start and chat.")
    return 0


def cmd_path(args: argparse.Namespace, settings: Settings) -> int:
    paths = {
        "models": settings.model_folders[0],
        "home": settings.data_dir,
        "config": settings.config_file,
        "logs": settings.log_dir,
        "documents": settings.documents_dir,
    }
    print(paths[args.which])
    return 0


def cmd_shutdown(args: argparse.Namespace, settings: Settings) -> int:
    with _client(settings) as client:
        client.shutdown()
    print("qwendesk is shutting down.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        flags = {name: getattr(args, name) for name in config.FIELDS if hasattr(args, name)}
        settings = config.load_settings(flags)
        return args.func(args, settings) or 0
    except QwendeskError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
