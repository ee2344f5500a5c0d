"""Find and end a child's whole process tree (Xinference orphans its workers when killed hard).

On POSIX the child leads its own process group, which outlives a killed parent chain. Windows has no
process groups that can be signalled: there the tree is followed through psutil's parent links.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

# A stale group is only killed if one of its processes still looks like ours.
XINFERENCE_MARKERS = ("xinference", "xoscar")
POSIX = os.name == "posix"


def new_group_options() -> dict[str, object]:
    """Popen options that make the child the root of a tree we can end as a whole."""
    if POSIX:
        return {"start_new_session": True}
    return {"creationflags": 0x200}  # CREATE_NEW_PROCESS_GROUP


def descendants(pid: int) -> list[psutil.Process]:
    """All live processes whose parent chain leads to `pid` (empty if it is gone)."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def group_members(pgid: int) -> list[psutil.Process]:
    """Live processes in process group `pgid` (zombies, already dead, are left to their parent)."""
    if not POSIX:
        root = _process(pgid)
        return [root, *descendants(pgid)] if root is not None else []
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def looks_like_xinference(proc: psutil.Process) -> bool:
    try:
        cmdline = " ".join(proc.cmdline()).lower()
    except psutil.Error:
        return False
    return any(marker in cmdline for marker in XINFERENCE_MARKERS)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group (on Windows: to the root and its descendants); False when it is gone."""
    if not POSIX:
        members = group_members(pgid)
        for proc in members:
            with contextlib.suppress(psutil.Error):
                proc.terminate()  # Windows knows one way to end a process
        return bool(members)
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def kill_all(procs: Iterable[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL these processes (psutil checks each one is still the same process) and reap them."""
    procs = list(procs)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=timeout)


def terminate_tree(pgid: int, extra: Iterable[psutil.Process] = (), grace: float = 10.0) -> None:
    """SIGTERM the group, wait up to `grace` s, then SIGKILL the group and any known stragglers."""
    extra = list(extra)
    if signal_group(pgid, signal.SIGTERM):
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and group_members(pgid):
            time.sleep(0.2)
    if POSIX:
        signal_group(pgid, signal.SIGKILL)  # atomic for the whole group, even a child forked just now
    kill_all(group_members(pgid) + [p for p in extra if p.is_running()])


def _is_our_group(pgid: int) -> bool:
    if POSIX:
        return pgid == os.getpgid(0)
    return pgid == os.getpid()


def write_pid_file(path: Path, pgid: int) -> None:
    """Record our child's process group so a later start can clean up after a crashed daemon."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"pgid": pgid, "daemon_pid": os.getpid()}))


def read_pid_file(path: Path) -> int | None:
    try:
        data = json.loads(path.read_text())
        return int(data["pgid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def kill_stale_group(path: Path) -> list[int]:
    """Kill the group recorded in a pid file if it still looks like Xinference; returns the pids killed."""
    pgid = read_pid_file(path)
    killed: list[int] = []
    if pgid is not None and not _is_our_group(pgid):
        members = group_members(pgid)
        if any(looks_like_xinference(p) for p in members):
            killed = [p.pid for p in members]
            kill_all(members)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return killed
