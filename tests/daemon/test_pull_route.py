"""POST /api/pull on real uvicorn (loopback) against the local hub: SSE progress, done, errors, disconnect."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from httpx_sse import EventSource

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.errors import QwendeskError
from qwendesk.daemon.http_errors import error_response
from qwendesk.daemon.routes.pull import router
from qwendesk.models.folder import model_name_for
from tests.conftest import DaemonProcess, free_port
from tests.hub_server import blob, catalog_entry

REPO = "Qwen/Test-GGUF"
MB = 1024 * 1024


def make_app(settings) -> FastAPI:
    """The pull router with the daemon's own error mapping ({"error", "code"} with the code's status)."""
    app = FastAPI()
    app.state.settings = settings
    app.include_router(router)

    @app.exception_handler(QwendeskError)
    async def _error(_request: Request, exc: QwendeskError) -> JSONResponse:
        return error_response(_request.url.path, exc)

    return app


@pytest.fixture
def publish(hub_server, tmp_path, monkeypatch):
    """Publish one model on the local hub and put it in a catalog file the daemon's settings point at."""
    entries = []

    def _publish(name: str, files: dict[str, bytes], **kwargs) -> None:
        entries.append(catalog_entry(hub_server, name, REPO, files, **kwargs))
        path = tmp_path / "catalog.json"
        path.write_text(json.dumps({"models": entries}))
        monkeypatch.setenv("QWENDESK_CATALOG_FILE", str(path))

    monkeypatch.setenv("QWENDESK_HUGGINGFACE_ENDPOINT", hub_server.url)
    monkeypatch.setenv("QWENDESK_CATALOG_SOURCE", "huggingface")
    return _publish


@pytest.fixture
def pull_app(publish) -> Iterator[tuple[str, object]]:
    """Real uvicorn on a free loopback port, serving the pull route; yields (base URL, settings)."""
    settings_box: dict = {}

    def start():
        settings = load_settings()
        settings_box["settings"] = settings
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(make_app(settings), log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        settings_box["stop"] = (server, thread)
        return f"http://127.0.0.1:{sock.getsockname()[1]}", settings

    yield start
    if "stop" in settings_box:
        server, thread = settings_box["stop"]
        server.should_exit = True
        thread.join(timeout=10)


def hub_daemon_env(hub_server, folder: Path, name: str, files: dict[str, bytes]) -> dict[str, str]:
    """A daemon's environment with one release published on the local hub and listed in a catalog file."""
    catalog = folder / "catalog.json"
    catalog.write_text(json.dumps({"models": [catalog_entry(hub_server, name, REPO, files)]}))
    return {
        "QWENDESK_HUGGINGFACE_ENDPOINT": hub_server.url,
        "QWENDESK_CATALOG_SOURCE": "huggingface",
        "QWENDESK_CATALOG_FILE": str(catalog),
    }


def stream_pull(base: str, name: str) -> list[tuple[str, dict]]:
    with httpx.stream("POST", f"{base}/api/pull", json={"name": name}, timeout=60) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [(sse.event, sse.json()) for sse in EventSource(response).iter_sse()]


def test_pull_streams_progress_then_done(publish, pull_app):
    content = blob(3 * MB)
    publish("qwen-test:1b-q4_k_m", {"qwen-test-1b-q4_k_m.gguf": content})
    base, settings = pull_app()

    events = stream_pull(base, "qwen-test:1b")

    kinds = [kind for kind, _ in events]
    assert kinds[-1] == "done" and set(kinds[:-1]) == {"progress"}
    progress = [data for kind, data in events if kind == "progress" and data["phase"] == "download"]
    assert progress[-1]["done"] == progress[-1]["total"] == len(content)
    assert set(progress[0]) >= {"file", "done", "total", "speed", "eta"}
    done = events[-1][1]
    target = settings.model_folders[0] / "qwen-test-1b-q4_k_m.gguf"
    assert done["model"] == "qwen-test:1b-q4_k_m" and done["path"] == str(target)
    assert target.read_bytes() == content


def test_unknown_name_is_a_404_before_any_stream(publish, pull_app):
    publish("qwen-test:1b-q4_k_m", {"m.gguf": b"x"})
    base, _ = pull_app()

    response = httpx.post(f"{base}/api/pull", json={"name": "llama:70b"})

    assert response.status_code == 404
    assert "No model named 'llama:70b'" in response.json()["error"]


def test_hub_404_ends_the_stream_with_an_error_event(publish, pull_app, hub_server):
    publish("qwen-test:1b-q4_k_m", {"m.gguf": b"x"})
    hub_server.state.files.clear()
    base, settings = pull_app()

    events = stream_pull(base, "qwen-test:1b")

    assert events[-1][0] == "error" and "m.gguf was not found on Hugging Face" in events[-1][1]["error"]
    assert not settings.model_folders[0].exists() or not any(settings.model_folders[0].iterdir())


def test_checksum_mismatch_is_an_error_event_and_leaves_nothing(publish, pull_app):
    publish("qwen-test:1b-q4_k_m", {"m.gguf": blob(MB)}, sha256={"m.gguf": "0" * 64})
    base, settings = pull_app()

    events = stream_pull(base, "qwen-test:1b")

    assert events[-1][0] == "error" and "Checksum mismatch for m.gguf" in events[-1][1]["error"]
    assert list(settings.model_folders[0].iterdir()) == []


def test_client_disconnect_stops_the_download_and_a_new_pull_resumes(publish, pull_app, hub_server):
    content = blob(6 * MB, seed=1)
    publish("qwen-test:1b-q4_k_m", {"m.gguf": content})
    hub_server.state.bytes_per_second = 2 * MB
    base, settings = pull_app()
    part = settings.model_folders[0] / "m.gguf.part"

    with httpx.stream("POST", f"{base}/api/pull", json={"name": "qwen-test:1b"}, timeout=60) as response:
        for kind, data in ((e.event, e.json()) for e in EventSource(response).iter_sse()):
            if kind == "progress" and data["done"] >= MB:
                break  # the tray closed the window: leave the stream

    def stalled() -> bool:  # the download thread noticed and stopped writing
        size = part.stat().st_size
        time.sleep(0.5)
        return part.stat().st_size == size

    deadline = time.monotonic() + 20
    while not stalled() and time.monotonic() < deadline:
        pass
    kept = part.stat().st_size
    assert MB <= kept < len(content)
    assert not (settings.model_folders[0] / "m.gguf").exists()

    hub_server.state.bytes_per_second = None
    events = stream_pull(base, "qwen-test:1b")

    assert events[-1][0] == "done"
    assert (settings.model_folders[0] / "m.gguf").read_bytes() == content
    assert hub_server.requests("GET", cdn=True)[-1].range == f"bytes={kept}-"


def test_cli_pull_through_the_daemon_ctrl_c_keeps_part_and_rerun_resumes(hub_server, tmp_path):
    """`qwendesk pull` streams the daemon's progress; SIGINT stops it, the daemon keeps the .part, a rerun resumes."""
    content = blob(8 * MB, seed=7)
    env = hub_daemon_env(hub_server, tmp_path, "qwen-test:1b-q4_k_m", {"m.gguf": content})
    proc = DaemonProcess(tmp_path / "home", free_port(), env).start()  # Xinference is never needed here
    part = proc.models_dir / "m.gguf.part"
    hub_server.state.bytes_per_second = 2 * MB

    def cli() -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "qwendesk.daemon", "pull", "qwen-test:1b"],
            env=proc.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            # As typed in a terminal: a test run started in the background inherits SIGINT ignored.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    try:
        child = cli()
        try:
            deadline = time.monotonic() + 30
            while not (part.exists() and part.stat().st_size >= MB) and time.monotonic() < deadline:
                time.sleep(0.05)
            os.killpg(child.pid, signal.SIGINT)
            output, _ = child.communicate(timeout=30)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        assert child.returncode == 130, output
        assert "run `qwendesk pull qwen-test:1b` again to resume" in output
        # The daemon notices the closed stream and stops downloading; the part stays for a resume.
        proc.wait_for(lambda _c: _stable(part), what="the daemon to stop downloading")
        kept = part.stat().st_size
        assert 0 < kept < len(content) and not part.with_suffix("").exists()

        hub_server.state.bytes_per_second = None
        second = cli()
        output, _ = second.communicate(timeout=60)
        assert second.returncode == 0, output
        assert "Pulled qwen-test:1b-q4_k_m" in output
        assert (proc.models_dir / "m.gguf").read_bytes() == content
        assert hub_server.requests("GET", cdn=True)[-1].range == f"bytes={kept}-"
        assert proc.wait_for(lambda _c: proc.model("m"), what="the pulled file to be listed")
    finally:
        proc.stop()


def _stable(path: Path, quiet: float = 0.5) -> bool:
    """True when `path` did not grow for `quiet` seconds."""
    before = path.stat().st_size
    time.sleep(quiet)
    return path.stat().st_size == before


@pytest.mark.e2e
def test_pulled_model_is_registered_by_the_daemon_and_chattable(hub_server, smollm2_gguf, tmp_path):
    """Issue item 5: a real daemon pulls from the local hub; the file lands, registers and answers a chat."""
    content = smollm2_gguf.read_bytes()
    env = hub_daemon_env(hub_server, tmp_path, "smol-pull:135m-q4_1", {"smol-pull-135m-q4_1.gguf": content})
    env.update(
        QWENDESK_KEEP_ALIVE="0",
        QWENDESK_SUPERVISOR_TIMEOUT="300",  # 2 shared cores: Xinference can be slow to answer
    )
    proc = DaemonProcess(tmp_path / "home", free_port(), env).start()
    try:
        events = stream_pull(proc.url, "smol-pull:135m")
        assert events[-1][0] == "done", events[-1]
        path = events[-1][1]["path"]
        assert path == str(proc.models_dir / "smol-pull-135m-q4_1.gguf")
        name = model_name_for(path)

        model = proc.wait_for(lambda _c: proc.model(name), timeout=60, what=f"{name} registered")
        assert model["file"] == path and not model["error"]
        proc.client.start(name, n_ctx=512)
        body = {"model": name, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8}
        reply = httpx.post(proc.url + "/v1/chat/completions", json=body, timeout=300)
        assert reply.status_code == 200, reply.text
        assert reply.json()["choices"][0]["message"]["content"].strip()
        proc.client.stop(name)
    finally:
        proc.stop()
