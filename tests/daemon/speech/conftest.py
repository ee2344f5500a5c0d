"""Fixtures for speech: spoken sentences in every upload format, the real tiny.en model, a running worker."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

from .media import FORMATS, SENTENCES, convert, fetch_whisper_tiny_en, speak


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech")


@pytest.fixture(scope="session")
def sentence_wav(speech_dir: Path) -> Path:
    """The first known sentence, spoken by espeak-ng (about 4.5 s)."""
    return speak(SENTENCES[0], speech_dir / "sentence.wav")


@pytest.fixture(scope="session")
def paragraph_wav(speech_dir: Path) -> Path:
    """All known sentences in one recording (about 13 s, several segments)."""
    return speak(" ".join(SENTENCES), speech_dir / "paragraph.wav")


@pytest.fixture(scope="session")
def sentence_files(speech_dir: Path, sentence_wav: Path) -> dict[str, Path]:
    """The first sentence in every upload format of media.FORMATS, by suffix."""
    return {
        suffix: convert(sentence_wav, speech_dir / f"sentence.{suffix}", *spec)
        for suffix, spec in FORMATS.items()
    }


@pytest.fixture(scope="session")
def whisper_tiny_en() -> Path:
    """The real Whisper tiny.en CTranslate2 folder (cached; read-only: copy or link it, do not modify)."""
    return fetch_whisper_tiny_en()


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    port: int
    key: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, as the daemon stops it; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_worker(
    model: Path, log: Path, *extra: str, parent: int | None = None, timeout: float = 60.0
) -> WorkerProcess:
    """Start the worker as the daemon will (port and key of its choosing, key in the environment, this
    process as the parent it watches) and wait for /health."""
    port, key = free_port(), secrets.token_urlsafe(24)
    env = {**os.environ, "QWENDESK_SPEECH_KEY": key}
    cmd = [sys.executable, "-m", "qwendesk.daemon.speech.worker", "--model", str(model), "--port", str(port),
           "--threads", "2", "--parent", str(parent or os.getpid()), *extra]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    worker = WorkerProcess(proc, port, key, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited with {proc.returncode}:\n{worker.output()}")
        try:
            if httpx.get(f"{worker.url}/health", headers=worker.headers(), timeout=2).status_code == 200:
                return worker
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    worker.stop()
    raise AssertionError(f"the worker did not answer /health within {timeout} s:\n{worker.output()}")


@pytest.fixture(scope="module")
def worker(whisper_tiny_en: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """A real worker process serving tiny.en."""
    w = start_worker(whisper_tiny_en, tmp_path_factory.mktemp("worker") / "worker.log")
    yield w
    w.stop()
