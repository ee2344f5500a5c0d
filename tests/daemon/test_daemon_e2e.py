"""The daemon end to end: real `qwendesk serve`, real Xinference, real llama.cpp, real files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from qwendesk.models.folder import model_name_for
from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model

pytestmark = pytest.mark.e2e


def chat(daemon: DaemonProcess, model: str, text: str, max_tokens: int = 16) -> dict:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": text}],
        "max_tokens": max_tokens,
        "temperature": 0,
    }
    r = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()


def xinference_children(daemon: DaemonProcess) -> list[psutil.Process]:
    out = []
    for p in daemon.tree()[1:]:
        try:
            if any("xinference" in part for part in p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def test_smollm2_appears_starts_chats_with_its_own_template_and_stops(daemon: DaemonProcess) -> None:
    model = daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="SmolLM2 to be listed")
    assert model["architecture"] == "llama"
    assert model["quantization"] == "Q4_1"
    assert model["size_bytes"] == Path(model["file"]).stat().st_size
    assert model["chat_template"] is True
    assert model["state"] in ("available", "running")
    daemon.client.stop(SMOLLM2_NAME)  # the session daemon is shared: other tests may have started it
    assert daemon.model(SMOLLM2_NAME)["state"] == "available"

    started = daemon.client.start(SMOLLM2_NAME, n_ctx=2048)
    assert started["state"] == "running"
    assert started["n_ctx"] == 2048

    answer = chat(daemon, SMOLLM2_NAME, "What is the capital of France?")
    assert answer["choices"][0]["message"]["content"].strip()
    # The GGUF's ChatML template (with SmolLM2's default system prompt) wraps the 7-token question.
    # A wrong template (the family name sent as the template) gives ~6 prompt tokens.
    assert answer["usage"]["prompt_tokens"] > 25

    status = daemon.client.status()
    assert status["supervisor"]["state"] == "running"
    assert status["supervisor"]["mode"] == "embedded"
    assert status["accelerator"]["kind"] == "cpu"

    stopped = daemon.client.stop(SMOLLM2_NAME)
    assert stopped["state"] == "available"


@pytest.mark.parametrize("fixture", ["qwen2_gguf", "qwen3_gguf"])
def test_generated_qwen_files_register_with_a_qwen_family_and_chatml(
    daemon: DaemonProcess, fixture: str, request: pytest.FixtureRequest
) -> None:
    source: Path = request.getfixturevalue(fixture)
    target = link_model(source, daemon.models_dir, f"e2e-{fixture}.gguf")
    name = model_name_for(target)
    try:
        model = daemon.wait_for(lambda c: daemon.model(name), what=f"{name} to be listed")
        assert model["architecture"] == ("qwen2" if fixture == "qwen2_gguf" else "qwen3")
        assert model["family"].startswith("qwen")
        assert model["chat_template"] is True
        assert "chat" in model["abilities"]
        daemon.client.start(name, n_ctx=512)
        answer = chat(daemon, name, "你好, hello", max_tokens=4)
        # ChatML framing: <|im_start|>system ... <|im_end|> <|im_start|>user ... <|im_start|>assistant
        assert answer["usage"]["prompt_tokens"] > 8
        assert answer["usage"]["completion_tokens"] >= 1
        daemon.client.stop(name)
    finally:
        target.unlink(missing_ok=True)
    daemon.wait_for(lambda c: not daemon.model(name), what=f"{name} to disappear")


def test_bad_files_are_listed_with_a_clear_error_and_nothing_else_breaks(
    daemon: DaemonProcess, smollm2_gguf: Path
) -> None:
    truncated = daemon.models_dir / "truncated.gguf"
    with smollm2_gguf.open("rb") as src:
        truncated.write_bytes(src.read(5_000_000))
    old = time.time() - 60  # an old mtime: not a copy in progress
    os.utime(truncated, (old, old))
    text = daemon.models_dir / "notes.gguf"
    text.write_text("this is not a model\n")
    try:

        def both_in_error(client) -> list[dict] | None:
            bad = [
                m for m in client.models() if m["name"] in ("truncated", "notes") and m["state"] == "error"
            ]
            return bad if len(bad) == 2 else None

        bad = daemon.wait_for(both_in_error, what="both bad files in error")
        messages = {m["name"]: m["error"] for m in bad}
        assert "truncated" in messages["truncated"].lower() or "bounds" in messages["truncated"].lower()
        assert "not a gguf" in messages["notes"].lower() or "magic" in messages["notes"].lower()
        with pytest.raises(Exception, match="cannot start"):
            daemon.client.start("notes")
        assert daemon.client.health()["status"] == "ok"
        assert daemon.model(SMOLLM2_NAME)["state"] in ("available", "running")
    finally:
        truncated.unlink(missing_ok=True)
        text.unlink(missing_ok=True)


def test_removing_a_running_model_stops_and_unregisters_it(daemon: DaemonProcess, qwen2_gguf: Path) -> None:
    target = link_model(qwen2_gguf, daemon.models_dir, "e2e-removed.gguf")
    name = model_name_for(target)
    daemon.wait_for(lambda c: daemon.model(name), what="listed")
    daemon.client.start(name, n_ctx=512)
    assert any(name in " ".join(p.cmdline()) for p in daemon.tree() if p.is_running())
    target.unlink()
    daemon.wait_for(lambda c: not daemon.model(name), what="model to be forgotten")

    def model_process_gone(_: object) -> bool:
        return not any(name in " ".join(p.cmdline()) for p in daemon.tree() if _alive(p))

    daemon.wait_for(model_process_gone, timeout=60, what="the model process to exit")


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_second_daemon_on_the_same_home_is_refused(daemon: DaemonProcess) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon", "serve"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0
    assert "already running" in out.stderr


def test_dns_rebinding_and_foreign_origins_are_refused(daemon: DaemonProcess) -> None:
    assert httpx.get(daemon.url + "/api/models", headers={"Host": "evil.example"}).status_code == 403
    assert (
        httpx.get(daemon.url + "/api/models", headers={"Origin": "https://evil.example"}).status_code == 403
    )
    assert httpx.get(daemon.url + "/api/models", headers={"Origin": daemon.url}).status_code == 200


def test_a_start_that_cannot_fit_in_memory_is_refused_with_numbers(daemon: DaemonProcess) -> None:
    daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="listed")
    daemon.client.stop(SMOLLM2_NAME)
    r = httpx.post(daemon.url + f"/api/models/{SMOLLM2_NAME}/start", json={"n_ctx": 50_000_000}, timeout=30)
    assert r.status_code == 507
    message = r.json()["error"]
    assert "GiB" in message and "KV cache" in message and "n_ctx" in message
    assert daemon.model(SMOLLM2_NAME)["state"] == "available"


def test_unknown_model_and_bad_body(daemon: DaemonProcess) -> None:
    r = httpx.post(daemon.url + "/api/models/nope/start", timeout=30)
    assert r.status_code == 404 and "nope" in r.json()["error"]
    r = httpx.post(daemon.url + f"/api/models/{SMOLLM2_NAME}/start", json={"n_ctx": "lots"}, timeout=30)
    assert r.status_code == 400 and "n_ctx" in r.json()["error"]


def test_cli_round_trip(daemon: DaemonProcess) -> None:
    def qd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "qwendesk.daemon", *args],
            env=daemon.env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    assert qd("path", "models").stdout.strip() == str(daemon.models_dir)
    listing = qd("models")
    assert listing.returncode == 0 and SMOLLM2_NAME in listing.stdout
    assert "xinference:" in qd("status").stdout
    missing = qd("start", "no-such-model")
    assert missing.returncode == 1 and "No model named" in missing.stderr


def test_cli_says_how_to_start_the_daemon_when_it_is_down(tmp_path: Path) -> None:
    env = {**os.environ, "QWENDESK_HOME": str(tmp_path), "QWENDESK_PORT": str(free_port())}
    out = subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon", "models"], env=env, capture_output=True, text=True
    )
    assert out.returncode == 1
    assert "not running" in out.stderr and "qwendesk serve" in out.stderr


def test_token_protects_api_and_v1(tmp_path: Path) -> None:
    proc = DaemonProcess(tmp_path, free_port(), {"QWENDESK_TOKEN": "sekret"}).start()
    try:
        assert httpx.get(proc.url + "/health").status_code == 200
        assert httpx.get(proc.url + "/api/models").status_code == 401
        assert httpx.get(proc.url + "/v1/models").status_code == 401
        ok = httpx.get(proc.url + "/api/models", headers={"Authorization": "Bearer sekret"})
        assert ok.status_code == 200
        assert proc.client.models() == []  # the client sends the configured token
    finally:
        proc.stop()


def test_killed_or_hung_xinference_is_restarted_with_its_models_then_sigterm_leaves_nothing(
    tmp_path: Path, smollm2_gguf: Path
) -> None:
    proc = DaemonProcess(tmp_path, free_port(), {"QWENDESK_SUPERVISOR_HANG_TIMEOUT": "10"})
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        proc.wait_for(lambda c: proc.model(SMOLLM2_NAME), what="listed")
        proc.client.start(SMOLLM2_NAME, n_ctx=1024)
        children = [p for p in xinference_children(proc) if p.ppid() == proc.proc.pid]
        assert children, "the daemon runs xinference as its child"
        first = children[0]
        first.send_signal(signal.SIGKILL)
        proc.wait_for(
            lambda c: c.status()["supervisor"]["state"] in ("restarting", "starting"),
            timeout=30,
            what="restart",
        )
        proc.wait_for(
            lambda c: proc.model(SMOLLM2_NAME).get("state") == "running", timeout=180, what="relaunch"
        )
        assert chat(proc, SMOLLM2_NAME, "Hi")["choices"][0]["message"]["content"] is not None
        assert first.pid not in [p.pid for p in xinference_children(proc)]

        # Hung but alive: stopped, it answers nothing. The health probe notices within the hang timeout.
        second = next(p for p in xinference_children(proc) if p.ppid() == proc.proc.pid)
        second.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        proc.wait_for(
            lambda c: c.status()["supervisor"]["state"] in ("restarting", "starting"),
            timeout=60,
            what="the hang to be noticed",
        )
        assert time.monotonic() - stopped_at < 10 + 30  # the hang timeout, plus a probe and a slow machine
        assert "Xinference stopped answering for 10 s" in (tmp_path / "logs" / "daemon.log").read_text()
        proc.wait_for(
            lambda c: proc.model(SMOLLM2_NAME).get("state") == "running", timeout=180, what="relaunch"
        )
        assert chat(proc, SMOLLM2_NAME, "Hi again")["choices"][0]["message"]["content"] is not None
        assert not _alive(second)

        tree = proc.tree()
        assert len(tree) >= 3
        proc.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status is -SIGTERM.
        assert proc.proc.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in proc.output()
        gone, alive = psutil.wait_procs(tree, timeout=30)
        assert not [p for p in alive if _alive(p)], f"left behind: {alive}"
    finally:
        proc.stop()


def _maps_numpy(pid: int) -> bool:
    """Whether the process has numpy's compiled core mapped (i.e. it imported numpy)."""
    return "numpy" in Path(f"/proc/{pid}/maps").read_text()


def test_idle_daemon_is_alone_lean_and_lazy_then_stops_what_a_request_started(
    tmp_path: Path, smollm2_gguf: Path
) -> None:
    """Idle: the daemon alone (no Xinference, no numpy); a /v1 request starts both; keep-alive stops both."""
    proc = DaemonProcess(tmp_path, free_port(), {"QWENDESK_KEEP_ALIVE": "3"})
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        listed = proc.wait_for(lambda c: proc.model(SMOLLM2_NAME), what="listed")
        assert listed["state"] == "available" and listed["architecture"] == "llama"
        assert len(proc.tree()) == 1, "nothing runs beside the idle daemon"
        assert proc.client.status()["supervisor"]["state"] == "stopped"
        assert not _maps_numpy(proc.proc.pid)

        assert chat(proc, SMOLLM2_NAME, "Hi", max_tokens=4)["usage"]["completion_tokens"] > 0
        assert xinference_children(proc), "the request started the embedded Xinference"

        proc.wait_for(
            lambda c: (
                proc.model(SMOLLM2_NAME).get("state") == "available"
                and c.status()["supervisor"]["state"] == "stopped"
            ),
            timeout=120,
            what="keep-alive to stop the model, then Xinference",
        )
        psutil.wait_procs(proc.tree()[1:], timeout=30)
        assert len(proc.tree()) == 1, f"left running: {[p.cmdline() for p in proc.tree()[1:]]}"
        assert not _maps_numpy(proc.proc.pid)
    finally:
        proc.stop()
