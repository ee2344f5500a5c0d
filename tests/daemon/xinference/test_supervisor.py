"""Supervisor: env, backoff, log explanations, process-tree cleanup, and a real crash/restart/stop cycle."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import SupervisorError
from qwendesk.daemon.ports import free_port
from qwendesk.daemon.xinference import RemoteXinference, make_supervisor, process_tree
from qwendesk.daemon.xinference import embedded as supervisor_embedded
from qwendesk.daemon.xinference.base import backoff_delay
from qwendesk.daemon.xinference.client import XinferenceClient
from qwendesk.daemon.xinference.embedded import EmbeddedSupervisor, build_env, find_executable, rotate_log
from qwendesk.daemon.xinference.engine_log import explain_log_file, explain_log_text
from qwendesk.daemon.xinference.remote import parse_remote_key

# Real lines from this machine's supervisor log when launching broken GGUFs.
TRUNCATED_LOG = """\
2026-11-25T08:57:33.246Z ERROR xinference.model.llm.llama_cpp.core pid:15363 role:local address:127.0.0.1:27690 node:vm Failed to set the param use_mmap = False, error: 'xllamacpp.xllamacpp.CommonParams' object has no attribute 'use_mmap'
0.00.002.204 I srv    load_model: loading model '/x/bad.gguf'
0.00.160.115 E llama_model_load: error loading model: tensor 'token_embd.weight' data is not within the file bounds, model is corrupted or incomplete
0.00.160.174 E llama_model_load_from_file_impl: failed to load model
RuntimeError: [address=127.0.0.1:45223, pid=15363] Failed to init server, please check the input params.
"""
MAGIC_LOG = "0.00.001.000 E gguf_init_from_file_impl: invalid magic characters: 'abcd', expected 'GGUF'\n"
MISSING_LOG = (
    "0.00.001.000 E gguf_init_from_file: failed to open GGUF file '/x/y.gguf' (No such file or directory)\n"
)
OOM_LOG = (
    "0.00.001.000 E ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 9000000000\n"
)


def settings_for(home: Path, **flags):
    return load_settings(flags={"home": str(home), **flags}, env={})


# ---- unit ----------------------------------------------------------------------------------------
def test_build_env(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    env = build_env(settings, "secret", base={"PATH": "/bin", "XINFERENCE_AUTH_ADVANCED": "0"})
    assert env["XINFERENCE_HOME"] == str(settings.xinference_home)
    assert env["HF_HUB_OFFLINE"] == "1" and env["XINFERENCE_MODEL_SRC"] == "huggingface"
    assert env["XINFERENCE_ENABLE_VIRTUAL_ENV"] == "0" and env["XINFERENCE_DISABLE_METRICS"] == "1"
    assert env["XINFERENCE_AUTH_ADVANCED"] == "1"  # an inherited "auth off" is overridden
    assert env["XOSCAR_AUTH_KEY"] == "secret" and env["PATH"] == "/bin"


def test_find_executable_prefers_the_venv() -> None:
    assert Path(find_executable()) == Path(sys.executable).parent / "xinference-local"
    with pytest.raises(SupervisorError, match="not found"):
        find_executable("no-such-xinference-binary")


def test_backoff_doubles_and_caps() -> None:
    assert [backoff_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TRUNCATED_LOG, "truncated"),
        (MAGIC_LOG, "not a GGUF"),
        (MISSING_LOG, "missing"),
        (OOM_LOG, "not enough memory"),
    ],
)
def test_explain_log_text(text: str, expected: str) -> None:
    reason = explain_log_text(text)
    assert reason is not None and expected in reason
    assert not reason.startswith("0.00") and "llama.cpp:" in reason


def test_explain_log_file_reads_only_since_offset(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text(TRUNCATED_LOG)
    offset = log.stat().st_size
    assert explain_log_file(log, offset) is None
    with log.open("a") as fh:
        fh.write(MAGIC_LOG)
    assert "not a GGUF" in explain_log_file(log, offset)
    assert explain_log_text("all fine\nroom to breathe\n") is None
    assert explain_log_file(tmp_path / "none.log", 0) is None


def test_rotate_log_keeps_one_previous(tmp_path: Path) -> None:
    log = tmp_path / "xinference.log"
    log.write_bytes(b"x" * 100)
    rotate_log(log, 50)
    assert log.stat().st_size == 0 and (tmp_path / "xinference.log.1").stat().st_size == 100
    log.write_bytes(b"y" * 10)
    rotate_log(log, 50)
    assert log.read_bytes() == b"y" * 10


def test_parse_remote_key_and_factory(tmp_path: Path) -> None:
    assert parse_remote_key("xf-abc") == ("xf-abc", None)
    assert parse_remote_key("admin:pa:ss") == (None, ("admin", "pa:ss"))
    assert parse_remote_key(None) == (None, None)
    assert isinstance(make_supervisor(settings_for(tmp_path)), EmbeddedSupervisor)
    remote = make_supervisor(settings_for(tmp_path, xinference_endpoint="http://10.0.0.1:9997/"))
    assert isinstance(remote, RemoteXinference) and remote.view().state == "remote"
    assert remote.endpoint == "http://10.0.0.1:9997"


async def test_remote_unreachable_is_clear(tmp_path: Path) -> None:
    port = free_port()
    remote = make_supervisor(settings_for(tmp_path, xinference_endpoint=f"http://127.0.0.1:{port}"))
    with pytest.raises(SupervisorError, match="No Xinference answers"):
        await remote.start()
    assert remote.view().state == "failed"
    await remote.stop()
    await remote.stop()


def _spawn_group(tmp_path: Path, argv0: str) -> subprocess.Popen[bytes]:
    """A real process group (leader + one child) whose cmdline contains `argv0`."""
    script = tmp_path / f"{argv0}.py"
    script.write_text(
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    deadline = time.monotonic() + 10
    while not process_tree.descendants(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc


def test_stale_pid_file_group_is_killed_only_if_xinference(tmp_path: Path) -> None:
    pid_file = tmp_path / "xinference.pid"
    stale = _spawn_group(tmp_path, "xinference-local")
    unrelated = _spawn_group(tmp_path, "editor")
    try:
        members = process_tree.group_members(stale.pid)
        assert len(members) == 2
        process_tree.write_pid_file(pid_file, unrelated.pid)
        assert process_tree.kill_stale_group(pid_file) == []  # not ours: left alone
        assert not pid_file.exists() and unrelated.poll() is None
        process_tree.write_pid_file(pid_file, stale.pid)
        assert sorted(process_tree.kill_stale_group(pid_file)) == sorted(p.pid for p in members)
        stale.wait(timeout=5)
        assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in members)
    finally:
        for proc in (stale, unrelated):
            process_tree.terminate_tree(proc.pid, process_tree.descendants(proc.pid), grace=1)
            proc.wait(timeout=5)


async def test_child_exiting_at_startup_fails_fast(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "xinference-local"
    fake.write_text("#!/bin/sh\necho 'ImportError: no module named xoscar' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(supervisor_embedded, "find_executable", lambda: str(fake))
    sup = EmbeddedSupervisor(settings_for(tmp_path / "home"))
    started = time.monotonic()
    with pytest.raises(SupervisorError, match="exit code 3") as info:
        await sup.start()
    assert "no module named xoscar" in info.value.message  # the log tail is in the message
    assert time.monotonic() - started < 30  # not the 120 s supervisor_timeout
    assert sup.view().state == "failed" and not sup.pid_path.exists()
    await sup.stop()


async def test_monitor_gives_up_after_quick_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit test of the restart loop: the first start works, every restart fails."""
    sup = EmbeddedSupervisor(settings_for(tmp_path / "home"), max_failures=3, backoff_base=0.01)
    attempts: list[float] = []

    async def fake_launch() -> None:
        attempts.append(time.monotonic())
        if len(attempts) > 1:
            raise SupervisorError("port in use")
        sup._proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
        sup._started_at = time.monotonic()
        sup.client = object()  # type: ignore[assignment]

    monkeypatch.setattr(sup, "_launch", fake_launch)
    monkeypatch.setattr(sup, "_teardown", lambda grace=10.0: asyncio.sleep(0))
    monkeypatch.setattr(supervisor_embedded, "POLL_INTERVAL", 0.05)
    states: list[str] = []

    async def record() -> None:  # async listeners work too
        states.append(sup.state)

    sup.on_state_change = record
    await sup.start()
    for _ in range(200):
        if sup.state == "failed":
            break
        await asyncio.sleep(0.05)
    assert states[:3] == ["starting", "running", "restarting"] and states[-1] == "failed"
    assert "giving up" in sup.view().error
    assert len(attempts) == 1 + 3  # the first start, then restarts until more than max_failures
    sup._stopping = True


FAKE_XINFERENCE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/status" else 404)
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


async def test_a_hung_xinference_is_detected_and_restarted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that is alive but answers nothing (SIGSTOP) is treated like a crash after the hang timeout."""
    sup = EmbeddedSupervisor(settings_for(tmp_path / "home", supervisor_hang_timeout=5), backoff_base=0.01)
    children: list[subprocess.Popen] = []

    async def fake_launch() -> None:
        port = free_port()
        child = subprocess.Popen([sys.executable, "-c", FAKE_XINFERENCE, str(port)], start_new_session=True)
        children.append(child)
        sup._proc, sup._started_at = child, time.monotonic()
        sup.client = XinferenceClient(f"http://127.0.0.1:{port}")
        for _ in range(100):
            if await sup.client.alive():
                return
            await asyncio.sleep(0.05)

    monkeypatch.setattr(sup, "_launch", fake_launch)
    monkeypatch.setattr(supervisor_embedded, "POLL_INTERVAL", 0.05)
    monkeypatch.setattr(supervisor_embedded, "PROBE_EVERY", 0.2)
    restarted = asyncio.Event()

    async def on_restarted() -> None:
        restarted.set()

    sup.on_restarted = on_restarted
    try:
        await sup.start()
        await asyncio.sleep(6)  # longer than the hang timeout: a child that answers is left alone
        assert sup.state == "running" and len(children) == 1
        os.kill(children[0].pid, signal.SIGSTOP)
        stopped_at = time.monotonic()
        await asyncio.wait_for(restarted.wait(), timeout=30)
        assert 5 <= time.monotonic() - stopped_at < 25  # the hang timeout, a probe, and a busy machine
        assert len(children) == 2 and sup.state == "running"
        # The fake serves forever, so it ends only if it was killed; a child left stopped times out here.
        # (Its exit status is not checked: another test's child watcher may have reaped it, reading 0.)
        children[0].wait(timeout=10)
    finally:
        sup._stopping = True
        for child in children:
            child.kill()
        await sup.stop()


# ---- e2e: one real supervisor through crash, restart and stop ----------------------------------
def _tree(pid: int) -> list[psutil.Process]:
    return [psutil.Process(pid), *process_tree.descendants(pid)]


def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


@pytest.mark.e2e
async def test_embedded_crash_restart_and_clean_stop(tmp_path: Path) -> None:
    # A generous timeout: this machine is shared, and a start takes 15 s idle but minutes under load.
    sup = EmbeddedSupervisor(settings_for(tmp_path / "home", supervisor_timeout=900), backoff_base=0.5)
    restarted = asyncio.Event()
    states: list[str] = []
    sup.on_state_change = lambda: states.append(sup.state)

    async def on_restarted() -> None:
        restarted.set()

    sup.on_restarted = on_restarted
    try:
        client = await sup.start()
        assert await sup.start() is client  # idempotent
        first_pid = sup.pid
        assert first_pid and sup.view().state == "running"
        assert os.getpgid(first_pid) == first_pid  # its own process group
        assert process_tree.read_pid_file(sup.pid_path) == first_pid
        first_tree = _tree(first_pid)
        assert len(first_tree) >= 2  # the API process and its supervisor/worker process

        os.kill(first_pid, signal.SIGKILL)
        await asyncio.wait_for(restarted.wait(), timeout=sup.settings.supervisor_timeout + 60)
        assert states[-2:] == ["restarting", "running"]
        assert not _alive(first_tree)  # the orphans of the killed child were ended too
        second_pid = sup.pid
        assert second_pid and second_pid != first_pid
        async with httpx.AsyncClient(base_url=sup.client.endpoint) as raw:
            assert (await raw.get("/v1/models")).status_code == 401
            assert (await raw.get("/v1/models", headers=sup.client.headers)).status_code == 200
        second_tree = _tree(second_pid)
    finally:
        await sup.stop()
    assert sup.view().state == "stopped" and sup.client is None and sup.pid is None
    assert not _alive(second_tree)
    assert not [p for p in psutil.process_iter() if _in_group(p, second_pid)]
    assert not sup.pid_path.exists()
    await sup.stop()  # idempotent


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE
    except (OSError, psutil.Error):
        return False
