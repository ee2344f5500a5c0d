"""`qwendesk serve`: one daemon per home (a lock), a rotating log, uvicorn on loopback, clean shutdown."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import logging.handlers
import os
import socket
from pathlib import Path

import uvicorn
from filelock import FileLock, Timeout

from . import accelerator
from .app import create_app
from .config import Settings
from .errors import AlreadyRunning, ConfigError
from .events import EventBus
from .lifecycle.manager import ModelManager
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
        info = {"pid": os.getpid(), "url": settings.url, "home": str(settings.data_dir), "log": str(log_path)}
        daemon_info_path(settings).write_text(json.dumps(info))
        log.info(
            "qwendesk daemon on %s (models: %s; Xinference: %s; %s)",
            settings.url,
            ", ".join(str(p) for p in settings.model_folders),
            settings.xinference_endpoint or f"embedded, {settings.supervisor_start} start",
            accel.name,
        )
        server.run()
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
