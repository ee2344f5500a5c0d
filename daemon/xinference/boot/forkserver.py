"""A pre-imported parent that forks the embedded Xinference's worker and its model sub-pools (Linux only).

Runs inside Xinference (standard library, plus psutil and xoscar, which Xinference requires). Measured
here: every model launch spawned `python -m xoscar.backends.indigen start_sub_pool`, a fresh interpreter
that re-imported Xinference (15-17 s of a 16.7 s launch, llama.cpp's own load 0.5 s), and
`xinference-local` spawned its supervisor/worker the same way (another 5-6 s of imports on the cold path,
and a second copy of ~200 MiB of imported modules). Here `xinference-local`, once it has parsed its
command line and before it starts a thread or opens a socket, imports everything the three kinds of
process need (IMPORTS), then forks this server. The server forks, on request:
- the supervisor/worker (`python -u start_local.py local.json`, asked by the API's LocalHost through
  ForkPopen), twice so that it is re-parented to `xinference-local`, its own parent as before (a subreaper);
- each model's sub-pool (asked by the worker through xoscar's `create_subprocess_exec`); it is the
  server's child, dies with it, and watches the worker as xoscar's ParentWatcher always does.
Forked processes share the imported pages with `xinference-local` (measure them by PSS). Anything that
does not match exactly, or any failure, falls back to Xinference's own spawn. Measured with it: launch to
first token raw load + 0.26 s, idle Xinference 254 MiB PSS (1079 as shipped), bench/FINDINGS.md section 6.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
import types
from typing import Any

from . import light

log = logging.getLogger("xinference.qwendesk.forkserver")  # Xinference's logging config keeps it

# What the API process, the supervisor/worker and a llama.cpp model sub-pool import, all at once.
IMPORTS = (
    "xinference.deploy.local_host",
    "xinference.api.restful_api",
    "xinference.core.supervisor",  # not xinference.deploy.local itself: start_local.py runs it as __main__
    "xinference.core.worker",
    "xinference.deploy.worker",
    "xinference.deploy.utils",
    "xinference.core.model",
    "xinference.model.llm.llama_cpp.core",
    "xinference.model.embedding.llama_cpp.core",
    "xinference.model.rerank.llama_cpp.core",
    "xoscar.backends.indigen.pool",
    "xllamacpp",
)
SUB_POOL_ARGS = ("-m", "xoscar.backends.indigen", "start_sub_pool", "-sn")
MAX_MESSAGE = 1 << 20
PR_SET_PDEATHSIG = 1
HEALTH_POLL = 0.25  # seconds between LocalHost's looks at a starting supervisor
REQUEST_TIMEOUT = 60.0  # a fork takes milliseconds


def supported() -> bool:
    """fork() after imports is safe on Linux; macOS (Objective-C runtime, Metal) and Windows spawn."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and hasattr(socket, "send_fds")
        and os.environ.get("QWENDESK_XINFERENCE_FORK", "1") != "0"
    )


def install() -> None:
    """In `xinference-local`: start the server when its command runs (never in other interpreters)."""
    if supported() and light.installed() and os.path.basename(sys.argv[0]) == "xinference-local":
        light.on_import("xinference.deploy.cmdline", _wrap_local_command)


def _wrap_local_command(cmdline: types.ModuleType) -> None:
    command = cmdline.local
    original = command.callback

    @functools.wraps(original)
    def callback(*args: Any, **kwargs: Any) -> Any:
        try:
            start()
        except Exception:  # Xinference's own spawning still works
            log.exception("qwendesk fork server not started; Xinference spawns its processes itself")
        return original(*args, **kwargs)

    command.callback = callback


# ---- the client side (xinference-local and the worker) -------------------------------------------------
class Channel:
    """One end of a socket pair to the server: a request with file descriptors, a JSON answer."""

    def __init__(self, sock: socket.socket) -> None:
        sock.settimeout(REQUEST_TIMEOUT)  # a stuck server must not hang the caller: it falls back to spawn
        self.sock = sock
        self.lock = threading.Lock()

    def request(self, message: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        with self.lock:
            socket.send_fds(self.sock, [json.dumps(message).encode()], fds)
            data = self.sock.recv(MAX_MESSAGE)
        if not data:
            raise ConnectionError("the qwendesk fork server has exited")
        answer = json.loads(data)
        if "error" in answer:
            raise RuntimeError(f"fork server: {answer['error']}")
        return answer


_channel: Channel | None = None


def start() -> None:
    """Import IMPORTS, fork the server, and divert LocalHost's spawn of the worker to it."""
    global _channel
    for name in IMPORTS:
        importlib.import_module(name)
    if threading.active_count() != 1:  # a Python thread may hold a lock the child would inherit
        raise RuntimeError(f"{threading.active_count()} threads are running; not forking")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    _flush_std()
    gc.collect()
    gc.freeze()  # garbage collections in the forked processes leave the shared imports' pages alone
    api_pid = os.getpid()
    pid = os.fork()
    if pid == 0:
        ours.close()
        try:
            Server(api_pid, theirs).serve()  # returns only in a forked worker or sub-pool
        except BaseException:  # the server itself failed: never fall through into Xinference's CLI here
            traceback.print_exc()
            _flush_std()
            os._exit(1)
        run_forked()  # always raises SystemExit: the forked process never returns into Xinference's CLI
    theirs.close()
    _channel = Channel(ours)
    _poll_cluster_faster()
    local_host = sys.modules["xinference.deploy.local_host"]
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)
    shim.Popen = ForkPopen  # type: ignore[attr-defined]
    local_host.subprocess = shim  # only LocalHost's spawn of start_local.py goes through the server
    log.info("qwendesk fork server started (pid %d)", pid)


def _poll_cluster_faster() -> None:
    """LocalHost sleeps XINFERENCE_HEALTH_CHECK_INTERVAL (5 s) before its first look at the supervisor it
    started, which a forked one passes within 0.2 s: poll every HEALTH_POLL s instead, within the same total
    (interval x attempts). Only this process, which uses them for nothing else, sees the new values."""
    from xinference import constants

    budget = constants.XINFERENCE_HEALTH_CHECK_INTERVAL * constants.XINFERENCE_HEALTH_CHECK_FAILURE_THRESHOLD
    if constants.XINFERENCE_HEALTH_CHECK_INTERVAL > HEALTH_POLL:
        constants.XINFERENCE_HEALTH_CHECK_INTERVAL = HEALTH_POLL  # type: ignore[assignment]
        constants.XINFERENCE_HEALTH_CHECK_FAILURE_THRESHOLD = max(1, round(budget / HEALTH_POLL))


def _is_start_local(args: Any) -> bool:
    return (
        isinstance(args, (list, tuple))
        and len(args) == 4
        and args[0] == sys.executable
        and args[1] == "-u"
        and str(args[2]).endswith("start_local.py")
    )


class ForkPopen(subprocess.Popen):  # type: ignore[type-arg]
    """subprocess.Popen whose child `python -u start_local.py CONFIG` is forked by the server instead.

    The child is re-parented to this process (LocalHost made it a subreaper) before the pid is returned,
    so wait(), poll(), the pipes and signals behave as for an exec'd child."""

    def _execute_child(  # type: ignore[override]
        self, args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
        shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, *rest,
    ) -> None:  # fmt: skip
        gid, gids, uid, umask, new_session = rest[1:6]
        group = rest[6] if len(rest) > 6 else -1
        plain = (
            executable is None and preexec_fn is None and not pass_fds and not shell and gid is None
            and gids is None and uid is None and umask < 0 and not new_session and group in (None, -1)
        )  # fmt: skip
        if _channel is None or not plain or not _is_start_local(args):
            return super()._execute_child(
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
                shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, *rest,
            )  # fmt: skip
        request = {
            "kind": "worker",
            "argv": [str(a) for a in args[2:]],
            "title": " ".join(str(a) for a in args),
            "env": dict(os.environ if env is None else env),
            "cwd": os.fspath(cwd) if cwd is not None else os.getcwd(),
        }
        fds = [p2cread if p2cread != -1 else 0, c2pwrite if c2pwrite != -1 else 1]
        fds.append(errwrite if errwrite != -1 else 2)
        try:
            answer = _channel.request(request, fds)
        except Exception:
            log.exception("fork server failed; spawning %s", args[2])
            return super()._execute_child(
                args, executable, preexec_fn, close_fds, pass_fds, cwd, env, startupinfo, creationflags,
                shell, p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite, *rest,
            )  # fmt: skip
        self.pid = answer["pid"]
        self._child_created = True
        self._close_pipe_fds(p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite)


def _divert_sub_pools(channel: Channel) -> None:
    """In the forked worker: xoscar's sub-pool spawn goes to the server (the same command, forked)."""
    from xoscar.backends.indigen import pool
    from xoscar.backends.indigen.handoff import SubPoolProcess

    spawn = pool.create_subprocess_exec

    async def create_subprocess_exec(*args: Any, **kwargs: Any) -> Any:
        matches = (
            len(args) == 6 and args[0] == sys.executable and tuple(args[1:5]) == SUB_POOL_ARGS
            and set(kwargs) <= {"env"}
        )  # fmt: skip
        if matches:
            request = {
                "kind": "sub_pool",
                "argv": ["-m", *args[1:]],
                "title": " ".join(str(a) for a in args),
                "env": dict(kwargs.get("env") or os.environ),
                "cwd": os.getcwd(),
                "shm": args[5],
            }
            try:
                answer = await asyncio.to_thread(channel.request, request, [0, 1, 2])
                return SubPoolProcess(answer["identity"])
            except Exception:
                log.exception("fork server failed; spawning the sub-pool")
        return await spawn(*args, **kwargs)

    pool.create_subprocess_exec = create_subprocess_exec


# ---- the server --------------------------------------------------------------------------------------
class Server:
    """The forked parent: one request at a time, each answered with the new process's pid."""

    def __init__(self, api_pid: int, sock: socket.socket) -> None:
        self.api_pid = api_pid
        self.selector = selectors.DefaultSelector()
        self.channels: list[socket.socket] = []
        self.wakeup_r, self.wakeup_w = socket.socketpair()
        self._add(sock)

    def _add(self, sock: socket.socket) -> None:
        self.channels.append(sock)
        self.selector.register(sock, selectors.EVENT_READ)

    def serve(self) -> None:
        _set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != self.api_pid:
            os._exit(0)
        _set_title("qwendesk: xinference fork server")
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the API process handles Ctrl-C for the tree
        self.wakeup_w.setblocking(False)
        signal.set_wakeup_fd(self.wakeup_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.selector.register(self.wakeup_r, selectors.EVENT_READ)
        while self.channels:
            for key, _ in self.selector.select(timeout=5):
                if key.fileobj is self.wakeup_r:
                    with contextlib.suppress(BlockingIOError):
                        self.wakeup_r.recv(4096)
                    continue
                if self._handle(key.fileobj):  # type: ignore[arg-type]
                    return  # in a forked child: run the process it was forked to be
            self._reap()
        os._exit(0)

    def _handle(self, sock: socket.socket) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 3)
        except OSError:
            data, fds = b"", []
        if not data:
            self.selector.unregister(sock)
            self.channels.remove(sock)
            sock.close()
            return False
        try:
            request = json.loads(data)
            forked = self._fork(request, fds)
        except Exception as exc:  # answer, keep serving
            forked = {"error": repr(exc)}
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if forked is None:
            return True  # this is the new process
        channel = forked.pop("channel", None)
        sock.send(json.dumps(forked).encode())
        if channel is not None:
            self._add(channel)
        return False

    def _fork(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any] | None:
        if len(fds) != 3:
            raise ValueError("expected stdin, stdout and stderr")
        _flush_std()
        gc.freeze()
        if request["kind"] == "sub_pool":
            pid = os.fork()
            if pid == 0:
                _or_exit(self._become, request, fds, sub_pool=True)
                return None
            import psutil

            return {"identity": {"pid": pid, "create_time": psutil.Process(pid).create_time()}}
        if request["kind"] != "worker":
            raise ValueError(f"unknown kind {request['kind']!r}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        report_r, report_w = os.pipe()
        middle = os.fork()
        if middle == 0:  # forks the worker and exits, so the worker is re-parented to xinference-local
            pid = -1
            try:
                pid = os.fork()
                if pid == 0:
                    os.close(report_r)
                    os.close(report_w)
                    ours.close()
                    _or_exit(self._become, request, fds, sub_pool=False, channel=theirs)
                    return None
                os.write(report_w, str(pid).encode())
            finally:
                if pid != 0:
                    os._exit(0)
        os.close(report_w)
        theirs.close()
        os.waitpid(middle, 0)  # once it is reaped, its child has been re-parented
        with os.fdopen(report_r, "rb") as fh:
            pid = int(fh.read() or 0)
        if not pid:
            ours.close()
            raise RuntimeError("the worker fork failed")
        return {"pid": pid, "channel": ours}

    def _become(
        self, request: dict[str, Any], fds: list[int], sub_pool: bool, channel: socket.socket | None = None
    ) -> None:
        """In the new process: drop the server's state, take the request's stdio, environment and cwd."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        self.selector.close()
        for sock in (*self.channels, self.wakeup_r, self.wakeup_w):
            sock.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        fds.clear()
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _set_title(request["title"])
        if sub_pool:  # what xoscar's preexec_fn does for an exec'd sub-pool
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            _set_parent_death_signal(signal.SIGKILL)
            package = os.path.dirname(sys.modules["xoscar.backends.indigen.pool"].__file__ or "")
            sys.argv = [os.path.join(package, "__main__.py"), *request["argv"][2:]]
            _Payload.target = functools.partial(_run_sub_pool, request["shm"])
        else:
            sys.argv = list(request["argv"])
            assert channel is not None
            _Payload.target = functools.partial(_run_worker, request["argv"][0], Channel(channel))

    def _reap(self) -> None:
        while True:
            try:
                pid, _status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return


class _Payload:
    """What a forked process runs once the server's loop has returned in it (see run_forked)."""

    target: Any = None


def run_forked() -> None:
    """Run the forked process's job; then exit as its interpreter would (atexit, threads, flush)."""
    target, _Payload.target = _Payload.target, None
    if target is None:
        raise SystemExit(1)
    try:
        target()
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        raise SystemExit(1) from None
    raise SystemExit(0)


def _or_exit(function: Any, *args: Any, **kwargs: Any) -> None:
    """In a just-forked child: a failure must end it, never return into the server's loop."""
    try:
        function(*args, **kwargs)
    except BaseException:
        traceback.print_exc()
        _flush_std()
        os._exit(1)


def _run_worker(script: str, channel: Channel) -> None:
    import runpy

    global _channel
    _channel = None
    _divert_sub_pools(channel)
    sys.stdout = _unbuffered(sys.stdout)
    sys.stderr = _unbuffered(sys.stderr)
    runpy.run_path(script, run_name="__main__")


def _run_sub_pool(shm_name: str) -> None:
    global _channel
    _channel = None
    from xoscar.backends.indigen.pool import MainActorPool

    MainActorPool._start_sub_pool_in_child(shm_name)


def _unbuffered(stream: Any) -> Any:
    """`python -u`: text written reaches the pipe at once."""
    with contextlib.suppress(AttributeError, ValueError):
        stream.reconfigure(write_through=True)
    return stream


def _flush_std() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _set_title(title: str) -> None:
    with contextlib.suppress(Exception):
        import setproctitle

        setproctitle.setproctitle(title)


def _set_parent_death_signal(sig: int) -> None:
    """Die with the parent (Linux prctl), as xoscar's sub-pools do."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
