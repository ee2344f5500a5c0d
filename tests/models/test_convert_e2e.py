"""A converted and quantized checkpoint lands in the models folder, registers, and chats through the daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from qwendesk.models.folder import model_name_for
from tests.conftest import DaemonProcess
from tests.models.hf_checkpoints import build_checkpoint

pytestmark = [pytest.mark.e2e, pytest.mark.convert]


def test_convert_with_quantize_is_registered_and_chattable(daemon: DaemonProcess, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="the quantize step needs qwendesk[convert]")
    hf_dir = build_checkpoint(tmp_path / "Qwen2.5-e2e", "qwen2", seed=7)
    out = subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon", "convert", str(hf_dir), "--quantize", "q4_0"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    produced = [p for p in daemon.models_dir.glob("*.gguf") if "e2e" in p.name.lower()]
    assert len(produced) == 1, list(daemon.models_dir.iterdir())
    name = model_name_for(produced[0])
    try:
        model = daemon.wait_for(lambda c: daemon.model(name), what=f"{name} to be listed")
        assert model["architecture"] == "qwen2"
        assert model["quantization"] == "Q4_0"
        assert model["chat_template"] is True
        daemon.client.start(name, n_ctx=512)
        body = {"model": name, "messages": [{"role": "user", "content": "你好"}], "max_tokens": 4}
        r = httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=300)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["completion_tokens"] >= 1
        daemon.client.stop(name)
    finally:
        for p in produced:
            p.unlink(missing_ok=True)
