"""Speech models in the model table: the second kind beside GGUF files, run by the speech worker.

The fast tests check what the manager decides without starting anything (Xinference is the fake of
test_manager.py, never asked to run a speech model); the e2e tests run the real worker process with the real
Whisper tiny.en model.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from gguf import GGUFWriter

from qwendesk.daemon.errors import BadRequest, Conflict, ModelLoadError, NotEnoughMemory
from qwendesk.daemon.lifecycle import manager as manager_module
from qwendesk.daemon.lifecycle import speech_worker
from qwendesk.daemon.lifecycle.folders import scan_all
from qwendesk.daemon.lifecycle.launch import Engine
from qwendesk.daemon.schemas import ModelState
from qwendesk.daemon.speech.errors import SpeechUnsupported
from qwendesk.daemon.watcher import model_files
from tests.daemon.lifecycle.test_manager import make
from tests.daemon.speech.media import SENTENCES, fetch_whisper_tiny_en, speak, wer

WHISPER = "whisper-tiny.en"
TRANSCRIBE = "/v1/audio/transcriptions"


@pytest.fixture(scope="session")
def tiny_en() -> Path:
    return fetch_whisper_tiny_en()


def link_folder(source: Path, target: Path) -> Path:
    """A model folder of hard links (no 76 MB copy; a symlink out of the models folder would be refused)."""
    target.mkdir(parents=True)
    for f in source.iterdir():
        try:
            os.link(f, target / f.name)
        except OSError:
            shutil.copyfile(f, target / f.name)
    return target


def write_projector(path: Path, *, audio: bool, vision: bool) -> Path:
    """A header-valid mmproj GGUF that says which encoders it has (not loadable: one small tensor)."""
    w = GGUFWriter(path, "clip")
    w.add_type("mmproj")
    w.add_bool("clip.has_audio_encoder", audio)
    w.add_bool("clip.has_vision_encoder", vision)
    w.add_tensor("weight", np.zeros((4, 32), np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def folder(tmp_path: Path, qwen2_gguf: Path, tiny_en: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(qwen2_gguf, models / "chat.gguf")
    link_folder(tiny_en, models / "openai" / WHISPER)  # one level down, as a hub download is kept
    return models


async def scanned(folder: Path, **settings):
    m = make(folder, **settings)
    found, hearing = scan_all([folder])
    await m.apply_scan(found, hearing)
    return m


# ---- fast: what the manager decides ----------------------------------------------------------------
async def test_speech_models_sit_beside_gguf_models_in_the_table(folder: Path) -> None:
    m = await scanned(folder)
    views = {v.name: v for v in m.views()}
    assert sorted(views) == ["chat", WHISPER]
    chat, whisper = views["chat"], views[WHISPER]
    assert (chat.kind, chat.format, whisper.kind, whisper.format) == ("chat", "gguf", "speech", "ctranslate2")
    assert whisper.abilities == ["transcribe"] and whisper.languages == ["en"] and not whisper.can_translate
    assert whisper.architecture == "whisper" and whisper.quantization is None
    assert whisper.state == ModelState.AVAILABLE and whisper.error is None and whisper.n_ctx is None
    assert whisper.file == str(folder / "openai" / WHISPER) and whisper.size_bytes > 70e6
    assert m.find("WHISPER-TINY.EN").name == WHISPER  # by the folder's name, as GGUFs by their file's
    await m.ensure_supervisor()
    assert m.supervisor.fake.names("register") == ["chat"]  # Xinference never hears of a speech model


async def test_each_kind_refuses_the_others_routes_before_anything_starts(folder: Path) -> None:
    m = await scanned(folder)
    with pytest.raises(BadRequest, match=r"speech-to-text model: it serves /v1/audio/transcriptions"):
        async with m.using(WHISPER, "chat", "/v1/chat/completions"):
            pass
    with pytest.raises(BadRequest, match=rf"chat is a chat model: it cannot transcribe.*\(here: {WHISPER}\)"):
        async with m.using("chat", "transcriptions", TRANSCRIBE):
            pass
    with pytest.raises(SpeechUnsupported, match="English-only Whisper model: it cannot translate"):
        async with m.using(WHISPER, "translations", "/v1/audio/translations"):
            pass
    assert not m.speech.workers and m.supervisor.starts == 0


async def test_memory_check_refuses_a_speech_model_that_cannot_fit(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = await scanned(folder, speech_max_seconds=1800)
    monkeypatch.setattr(manager_module, "memory_snapshot", lambda: {"available_bytes": 500 * 2**20})
    with pytest.raises(
        NotEnoughMemory, match=r"needs about 1\.\d GiB .* for 1800 s of audio.*speech_max_seconds"
    ):
        await m.start(WHISPER)
    assert m.find(WHISPER).state == ModelState.AVAILABLE and not m.speech.workers
    # The tray's start returns at once: the refusal then shows as the model's error, not a start that never ends.
    assert (await m.start(WHISPER, wait=False)).state == ModelState.STARTING
    await wait_for(lambda: m.find(WHISPER).state == ModelState.ERROR, what="the refusal")
    assert "speech_max_seconds" in m.find(WHISPER).error and not m.speech.workers


async def test_a_broken_speech_folder_is_listed_in_error_and_cannot_start(folder: Path) -> None:
    (folder / "openai" / WHISPER / "tokenizer.json").unlink()
    m = await scanned(folder)
    assert not m.find(WHISPER).files.pending  # its files are old (hard links): not a copy in progress
    view = m.find(WHISPER).view()
    assert view.state == ModelState.ERROR and "no tokenizer.json" in view.error
    with pytest.raises(Conflict, match="cannot start.*no tokenizer.json"):
        await m.start(WHISPER)


async def test_a_gguf_with_an_audio_projector_can_hear(tmp_path: Path, qwen2_gguf: Path) -> None:
    models = tmp_path / "models"
    for name, audio, vision in (("omni", True, True), ("seer", False, True)):
        (models / name).mkdir(parents=True)
        shutil.copy(qwen2_gguf, models / name / f"{name}-q8_0.gguf")
        write_projector(models / name / f"mmproj-{name}-f16.gguf", audio=audio, vision=vision)
    m = await scanned(models)
    omni, seer = m.find("omni-q8_0").view(), m.find("seer-q8_0").view()
    assert omni.mmproj and seer.mmproj
    assert "audio" in omni.abilities and "audio" not in seer.abilities
    found, _ = scan_all([models])
    await m.apply_scan(found, hearing=())  # the projector was replaced by a vision-only one
    assert "audio" not in m.find("omni-q8_0").view().abilities


def test_the_watcher_sees_speech_model_files_at_their_depth() -> None:
    assert model_files(("whisper", "model.bin"), False)
    assert model_files(("group", "whisper", "model.bin"), False)  # <models>/<group>/<model>/model.bin
    assert model_files(("group", "whisper", "tokenizer.json"), False)
    assert model_files(("group", "whisper"), True)  # a model folder moved in whole
    assert not model_files(("a", "b", "whisper", "model.bin"), False)  # deeper than the scan reads
    assert not model_files(("model.bin",), False)
    assert not model_files(("group", "whisper", "README.md"), False)
    assert not model_files(("a", "b", "x.gguf"), False)  # GGUF files keep their depth
    assert model_files(("a", "x.gguf"), False) and not model_files(("a", "b", "c"), True)


# ---- e2e: the real worker ------------------------------------------------------------------------
def worker_pid(m, name: str = WHISPER) -> int:
    pid = m.speech.pid(name)
    assert pid is not None
    return pid


async def transcribe(endpoint, wav: Path) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120, trust_env=False) as client:
        return await client.post(
            endpoint.url + TRANSCRIBE,
            headers=endpoint.headers,
            files={"file": (wav.name, wav.read_bytes())},
            data={"model": WHISPER},
        )


async def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.e2e
async def test_on_demand_start_transcribe_keep_alive_stop(folder: Path, tmp_path: Path) -> None:
    wav = speak(SENTENCES[0], tmp_path / "s.wav")
    m = await scanned(folder, keep_alive=60)
    try:
        async with m.events.subscribe() as queue:
            async with m.using(WHISPER, "transcriptions", TRANSCRIBE) as endpoint:
                entry = m.find(WHISPER)
                assert entry.state == ModelState.RUNNING and entry.on_demand and entry.busy == 1
                assert endpoint.url == entry.engine.url and endpoint.send_as is None
                response = await transcribe(endpoint, wav)
            states = [
                d["state"] for e, d in [queue.get_nowait() for _ in range(queue.qsize())] if e == "model"
            ]
        assert states == ["starting", "running"]
        assert response.status_code == 200 and wer(SENTENCES[0], response.json()["text"]) <= 0.25
        pid = worker_pid(m)
        assert psutil.Process(pid).ppid() == os.getpid()  # a child of the daemon, not of Xinference
        assert m.supervisor.starts == 0  # no Xinference for speech
        with pytest.raises(httpx.HTTPError):  # the worker wants the key the daemon gave it
            async with httpx.AsyncClient(trust_env=False) as client:
                (await client.get(endpoint.url + "/health")).raise_for_status()
        await m.keep_alive.check(entry.last_used + 30)
        assert entry.state == ModelState.RUNNING
        await m.keep_alive.check(entry.last_used + 61)
        assert entry.state == ModelState.AVAILABLE and _gone(pid)
        assert m.speech.pid(WHISPER) is None
    finally:
        await m.shut_down()


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.e2e
async def test_a_killed_worker_is_an_error_and_the_next_request_relaunches_it(
    folder: Path, tmp_path: Path
) -> None:
    wav = speak(SENTENCES[0], tmp_path / "s.wav")
    m = await scanned(folder)
    try:
        await m.start(WHISPER)
        first = worker_pid(m)
        os.kill(first, signal.SIGKILL)
        entry = m.find(WHISPER)
        await wait_for(lambda: entry.state == ModelState.ERROR, what="the error state")
        assert "stopped unexpectedly" in entry.error and "signal 9" in entry.error
        assert "next request starts it again" in entry.error
        async with m.using(WHISPER, "transcriptions", TRANSCRIBE) as endpoint:
            response = await transcribe(endpoint, wav)
        assert response.status_code == 200 and wer(SENTENCES[0], response.json()["text"]) <= 0.25
        assert entry.state == ModelState.RUNNING and entry.error is None and worker_pid(m) != first
    finally:
        await m.shut_down()
    assert m.speech.pid(WHISPER) is None


@pytest.mark.e2e
async def test_a_worker_killed_under_a_request_is_relaunched_by_that_request(
    folder: Path, tmp_path: Path
) -> None:
    """Killed just before a request arrives (before the watcher has looked): the request starts it again."""
    wav = speak(SENTENCES[0], tmp_path / "s.wav")
    m = await scanned(folder)
    try:
        await m.start(WHISPER)
        first = worker_pid(m)
        m.speech.workers[WHISPER].watcher.cancel()  # the watcher would notice within 0.5 s
        os.kill(first, signal.SIGKILL)
        await asyncio.to_thread(m.speech.workers[WHISPER].proc.wait)
        async with m.using(WHISPER, "transcriptions", TRANSCRIBE) as endpoint:
            response = await transcribe(endpoint, wav)
        assert response.status_code == 200 and worker_pid(m) != first
    finally:
        await m.shut_down()


@pytest.mark.e2e
async def test_a_model_that_cannot_load_is_an_error_with_the_workers_reason(folder: Path) -> None:
    broken = folder / "openai" / WHISPER / "model.bin"
    data = broken.read_bytes()[:4096]  # the header the scan reads is intact, the weights are not
    broken.unlink()
    broken.write_bytes(data)
    m = await scanned(folder)
    try:
        with pytest.raises(ModelLoadError, match=rf"{WHISPER} could not be loaded: cannot load the model in"):
            await m.start(WHISPER)
        view = m.find(WHISPER).view()
        assert view.state == ModelState.ERROR and "cannot load the model" in view.error
        assert not m.speech.workers
        assert (await m.stop(WHISPER)).state == ModelState.AVAILABLE
    finally:
        await m.shut_down()


@pytest.mark.e2e
async def test_a_port_taken_before_the_worker_binds_it_gets_another(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = [taken.getsockname()[1]]
    real_new = Engine.new

    def new_engine(cls) -> Engine:  # the taken port first, then as usual
        return Engine(f"http://127.0.0.1:{ports.pop()}", "k") if ports else real_new()

    monkeypatch.setattr(speech_worker.Engine, "new", classmethod(new_engine))
    m = await scanned(folder)
    try:
        view = await m.start(WHISPER)
        assert view.state == ModelState.RUNNING and not ports
        assert m.find(WHISPER).engine.port != taken.getsockname()[1]
        log = (m.settings.log_dir / f"speech-{WHISPER}.log").read_text()
        assert log.count("starting the speech worker") == 2 and "cannot listen on 127.0.0.1" in log
    finally:
        taken.close()
        await m.shut_down()


@pytest.mark.e2e
async def test_shut_down_stops_every_worker(folder: Path) -> None:
    m = await scanned(folder)
    await m.start(WHISPER)
    pid = worker_pid(m)
    await m.shut_down()
    assert _gone(pid)
    assert not m.speech.workers
