"""`qwendesk serve`: one daemon per home (a lock), a rotating log, uvicorn on loopback, clean shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import logging.handlers
import os
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import uvicorn
from filelock import FileLock, Timeout

from . import accelerator
from .app import create_app
from .config import Settings
from .errors import AlreadyRunning, ConfigError
from .events import EventBus
from .lifecycle.manager import ModelManager
from .routes.ollama import create_ollama_app
from .security import is_loopback
from .xinference import make_supervisor

log = logging.getLogger("qwendesk")


def setup_logging(settings: Settings, console: bool = True) -> Path:
    """Log to a rotating file in the log folder (and the console when in the foreground)."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    path = settings.log_dir / "daemon.log"
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 * 2**20, backupCount=3, encoding="utf-8")
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if console:
        stream = logging.StreamHandler()
        stream.setFormatter(fmt)
        root.addHandler(stream)
    root.setLevel(settings.log_level.upper())
    return path


def daemon_info_path(settings: Settings) -> Path:
    return settings.run_dir / "daemon.json"


def _check_port(host: str, port: int) -> None:
    """Fail with a clear message if the port is taken, before starting anything else."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        if os.name != "nt":  # as uvicorn does; connections in TIME_WAIT from a previous run do not count
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                raise ConfigError(
                    f"Port {port} on {host} is in use by another program. "
                    f"Choose another with `qwendesk serve --port N` or QWENDESK_PORT."
                ) from exc
            raise


def _check_ollama_port(settings: Settings) -> None:
    """The Ollama-compatible listener, when on, needs a port of its own that is free now."""
    if not settings.ollama_port:
        return
    if settings.ollama_port == settings.port:
        raise ConfigError(
            f"ollama_port and port are both {settings.port}: give the Ollama-compatible API a port of its own "
            "(e.g. 11434), or 0 to turn it off."
        )
    try:
        _check_port(settings.host, settings.ollama_port)
    except ConfigError:
        raise ConfigError(
            f"Port {settings.ollama_port} on {settings.host} (ollama_port) is in use, perhaps by Ollama itself. "
            "Stop that program, choose another port with QWENDESK_OLLAMA_PORT, or set it to 0."
        ) from None


class CompanionServer(uvicorn.Server):
    """A second listener in the daemon's event loop: the main server owns the signals and the lifetime."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[override]
        yield


async def serve_with_companion(main: uvicorn.Server, companion: uvicorn.Server | None) -> None:
    """Serve the API; the companion starts once the API has started and stops as soon as it stops."""
    if companion is None:
        await main.serve()
        return

    async def follow() -> None:
        while not main.started:
            if main.should_exit:
                return
            await asyncio.sleep(0.05)
        serving = asyncio.create_task(companion.serve())
        while not main.should_exit and not serving.done():
            await asyncio.sleep(0.1)
        companion.should_exit = True
        await serving

    follower = asyncio.create_task(follow())
    try:
        await main.serve()
    finally:
        main.should_exit = True
        await follower


def run_in_loop(main: Coroutine[Any, Any, None], config: uvicorn.Config) -> None:
    """Run `main` in the event loop uvicorn would choose (uvloop when installed), as `Server.run` does."""
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
            runner.run(main)
    else:  # pragma: no cover
        asyncio.run(main)


def _check_exposure(settings: Settings) -> None:
    """Refuse to listen beyond this machine without a token: the API can start models and read files."""
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(
            f"Listening on {settings.host or 'all addresses'} would let any machine on the network use qwendesk. "
            "Set a token (--token or QWENDESK_TOKEN) that every client must send, or keep --host 127.0.0.1."
        )


def keep_state_private(settings: Settings) -> None:
    """Make everything the daemon and its Xinference write readable by this user only.

    Logs carry engine keys and prompts, the run folder secrets: another local user must read none of it.
    The umask covers every file created from now on, by us and our children; existing state is repaired.
    """
    os.umask(0o077)
    for folder in {settings.data_dir, settings.log_dir, settings.run_dir, settings.xinference_home}:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            folder.chmod(0o700)
    for path in [*settings.log_dir.iterdir(), *settings.run_dir.iterdir()]:
        with contextlib.suppress(OSError):
            if path.is_file():
                path.chmod(0o600)


def serve(settings: Settings) -> int:
    """Run the daemon in the foreground until SIGTERM/Ctrl-C or POST /api/shutdown."""
    _check_exposure(settings)
    keep_state_private(settings)
    lock = FileLock(str(settings.run_dir / "daemon.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise AlreadyRunning(_already_running_message(settings)) from None
    try:
        _check_port(settings.host, settings.port)
        _check_ollama_port(settings)
        log_path = setup_logging(settings)
        accel = accelerator.detect()
        supervisor = make_supervisor(settings)
        manager = ModelManager(settings, supervisor, accel, EventBus())
        server: uvicorn.Server | None = None

        def request_shutdown() -> None:
            if server is not None:
                server.should_exit = True

        app = create_app(settings, manager, on_shutdown=request_shutdown)
        config = uvicorn.Config(
            app, host=settings.host, port=settings.port, log_config=None, access_log=False, lifespan="on"
        )
        server = uvicorn.Server(config)
        companion = None
        if settings.ollama_port:
            ollama = uvicorn.Config(
                create_ollama_app(settings, manager),
                host=settings.host,
                port=settings.ollama_port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
            companion = CompanionServer(ollama)
        info = {"pid": os.getpid(), "url": settings.url, "home": str(settings.data_dir), "log": str(log_path)}
        daemon_info_path(settings).write_text(json.dumps(info))
        log.info(
            "qwendesk daemon on %s (models: %s; Xinference: %s; %s)",
            settings.url,
            ", ".join(str(p) for p in settings.model_folders),
            settings.xinference_endpoint or f"embedded, {settings.supervisor_start} start",
            accel.name,
        )
        if companion is None:
            server.run()
        else:
            log.info("Ollama-compatible API on %s", settings.ollama_url)
            run_in_loop(serve_with_companion(server, companion), config)
        return 0 if server.started else 1
    finally:
        daemon_info_path(settings).unlink(missing_ok=True)
        lock.release()


def _already_running_message(settings: Settings) -> str:
    try:
        info = json.loads(daemon_info_path(settings).read_text())
        where = f" (pid {info['pid']}, {info['url']})"
    except (OSError, ValueError, KeyError):
        where = ""
    return (
        f"qwendesk is already running for {settings.data_dir}{where}. "
        "Use `qwendesk status`, or stop it first (`qwendesk shutdown`)."
    )
