"""Audio as chat input through the real daemon: a GGUF whose projector has an audio encoder (the synthetic
Qwen2 + `qwen2a` pair) is listed as able to hear and gets `input_audio` parts through to llama.cpp; a model that
cannot hear is refused with a 400 naming the part and the models that can."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model
from tests.fixtures.synthetic import write_qwen_gguf

from .audio_model import write_audio_mmproj

pytestmark = pytest.mark.e2e
HEARING = "qwen2-audio-tiny-q8_0"


@pytest.fixture(scope="module")
def audio_daemon(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("audio-chat-daemon")
    daemon = DaemonProcess(home, free_port(), {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_N_CTX": "2048"})
    folder = daemon.models_dir / "qwen2-audio"
    folder.mkdir(parents=True)
    write_qwen_gguf(folder / f"{HEARING}.gguf", arch="qwen2")
    write_audio_mmproj(folder / "mmproj-qwen2-audio-tiny-f16.gguf")
    link_model(smollm2_gguf, daemon.models_dir)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def ask(daemon: DaemonProcess, model: str, *parts: dict) -> httpx.Response:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "What is said here?"}, *parts]}],
        "max_tokens": 4,
        "temperature": 0,
    }
    return httpx.post(daemon.url + "/v1/chat/completions", json=body, timeout=300)


def audio_part(wav: Path) -> dict:
    return {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(wav.read_bytes()).decode(), "format": "wav"},
    }


def test_a_model_with_an_audio_projector_is_listed_as_hearing(audio_daemon: DaemonProcess) -> None:
    view = audio_daemon.wait_for(lambda c: audio_daemon.model(HEARING), what="the audio model")
    assert "audio" in view["abilities"] and view["mmproj"].endswith("mmproj-qwen2-audio-tiny-f16.gguf")
    assert "audio" not in audio_daemon.model(SMOLLM2_NAME)["abilities"]
    listed = {m["id"]: m for m in httpx.get(audio_daemon.url + "/v1/models").json()["data"]}
    assert "audio" in listed[HEARING]["capabilities"] and "audio" not in listed[SMOLLM2_NAME]["capabilities"]


def test_input_audio_reaches_llama_cpp_for_a_model_that_hears(
    audio_daemon: DaemonProcess, sentence_wav: Path
) -> None:
    text_only = ask(audio_daemon, HEARING)
    assert text_only.status_code == 200, text_only.text
    with_audio = ask(audio_daemon, HEARING, audio_part(sentence_wav))
    assert with_audio.status_code == 200, with_audio.text
    added = with_audio.json()["usage"]["prompt_tokens"] - text_only.json()["usage"]["prompt_tokens"]
    # A 4.5 s clip is padded to Whisper's 30 s window: 1500 encoder positions, pooled to 750 embeddings.
    assert 700 <= added <= 800, added


def test_a_model_that_cannot_hear_is_refused_naming_the_part(
    audio_daemon: DaemonProcess, sentence_wav: Path
) -> None:
    refused = ask(audio_daemon, SMOLLM2_NAME, audio_part(sentence_wav))
    assert refused.status_code == 400, refused.text
    error = refused.json()["error"]
    assert error["code"] == "audio_not_supported"
    assert error["message"].startswith(f"messages[0].content[1]: Model '{SMOLLM2_NAME}' cannot hear audio")
    assert f"Models that can hear: {HEARING}." in error["message"]
