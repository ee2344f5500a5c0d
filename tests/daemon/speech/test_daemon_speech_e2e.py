"""Speech through the real daemon: `qwendesk serve`, the real tiny.en model in its models folder, the unmodified
openai SDK against the daemon's /v1/audio, the worker's lifecycle (on demand, keep-alive, a killed worker, the
daemon's SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import psutil
import pytest
from openai import OpenAI

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model

from .media import FORMATS, PASSAGE, SENTENCES, convert, speak, wer
from .test_worker_e2e import cues

pytestmark = pytest.mark.e2e
MODEL = "whisper-tiny.en"
MAX_WER = 0.25
KEEP_ALIVE = 4  # seconds: short, so the keep-alive stop is seen within the test
MAX_UPLOAD_MIB = 2
WER_THROUGH_DAEMON: dict[str, float] = {}


def put_speech_model(source: Path, models: Path, *where: str) -> Path:
    """The model folder as hard links at `models/<where...>/whisper-tiny.en` (files added one by one, as a copy)."""
    target = models.joinpath(*where, MODEL)
    target.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        os.link(f, target / f.name)
    return target


@pytest.fixture(scope="module")
def speech_daemon(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, artifacts: Path
) -> Iterator[DaemonProcess]:
    """A daemon with SmolLM2 (a chat model, never started here) and, once running, nothing else."""
    home = tmp_path_factory.mktemp("speech-daemon")
    env = {"QWENDESK_KEEP_ALIVE": str(KEEP_ALIVE), "QWENDESK_SPEECH_MAX_UPLOAD_MIB": str(MAX_UPLOAD_MIB)}
    daemon = DaemonProcess(home, free_port(), env)
    link_model(smollm2_gguf, daemon.models_dir)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()
        if WER_THROUGH_DAEMON:
            (artifacts / "speech-daemon-wer.json").write_text(json.dumps(WER_THROUGH_DAEMON, indent=2))


@pytest.fixture(scope="module")
def speech_model(speech_daemon: DaemonProcess, whisper_tiny_en: Path) -> dict:
    """tiny.en copied in while the daemon runs, two levels down (`models/openai/<model>/model.bin`)."""
    put_speech_model(whisper_tiny_en, speech_daemon.models_dir, "openai")
    return speech_daemon.wait_for(
        lambda c: (m := speech_daemon.model(MODEL)) and m["error"] is None and m, what="the speech model"
    )


def sdk(daemon: DaemonProcess) -> OpenAI:
    return OpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0, timeout=180)


def workers(daemon: DaemonProcess) -> list[psutil.Process]:
    found = []
    for proc in daemon.tree()[1:]:
        try:
            if "qwendesk.daemon.speech.worker" in proc.cmdline():
                found.append(proc)
        except psutil.Error:
            pass
    return found


def state(daemon: DaemonProcess) -> str:
    return daemon.model(MODEL).get("state", "missing")


def test_a_speech_model_copied_in_is_listed_with_its_kind_and_state(
    speech_daemon: DaemonProcess, speech_model: dict
) -> None:
    assert speech_model["kind"] == "speech" and speech_model["format"] == "ctranslate2"
    assert speech_model["abilities"] == ["transcribe"] and speech_model["languages"] == ["en"]
    assert speech_model["can_translate"] is False and speech_model["state"] in ("available", "running")
    assert speech_model["file"].endswith(f"models/openai/{MODEL}")
    listed = {m.id: m for m in sdk(speech_daemon).models.list().data}
    assert listed[MODEL].model_extra["capabilities"] == ["transcriptions"]
    assert listed[MODEL].model_extra["state"] == speech_model["state"]
    assert "transcriptions" not in listed[SMOLLM2_NAME].model_extra["capabilities"]


@pytest.mark.parametrize("suffix", ["wav", "webm", "mp3"])
def test_the_sdk_transcribes_through_the_daemon_starting_the_model_on_demand(
    speech_daemon: DaemonProcess, speech_model: dict, sentence_files: dict[str, Path], suffix: str
) -> None:
    with sentence_files[suffix].open("rb") as f:
        result = sdk(speech_daemon).audio.transcriptions.create(model=MODEL, file=f)
    WER_THROUGH_DAEMON[f"sentence {suffix} (json)"] = score = round(wer(SENTENCES[0], result.text), 3)
    assert score <= MAX_WER, result.text
    assert state(speech_daemon) == "running" and len(workers(speech_daemon)) == 1
    assert speech_daemon.client.status()["supervisor"]["state"] == "stopped"  # no Xinference for speech


def test_every_response_format_through_the_daemon(
    speech_daemon: DaemonProcess, speech_model: dict, paragraph_wav: Path
) -> None:
    client, reference = sdk(speech_daemon), " ".join(SENTENCES)
    with paragraph_wav.open("rb") as f:
        text = client.audio.transcriptions.create(model=MODEL, file=f, response_format="text", language="en")
    assert isinstance(text, str) and text.endswith("\n")
    WER_THROUGH_DAEMON["paragraph text"] = round(wer(reference, text), 3)
    with paragraph_wav.open("rb") as f:
        srt = client.audio.transcriptions.create(model=MODEL, file=f, response_format="srt")
    found = cues(srt, ",")
    assert [b.split("\n")[0] for b in srt.strip().split("\n\n")] == [str(i) for i in range(1, len(found) + 1)]
    assert len(found) >= 2 and all(0 <= s < e <= 14.5 for s, e, _ in found)
    WER_THROUGH_DAEMON["paragraph srt"] = round(wer(reference, " ".join(t for *_, t in found)), 3)
    with paragraph_wav.open("rb") as f:
        vtt = client.audio.transcriptions.create(model=MODEL, file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n") and len(cues(vtt.removeprefix("WEBVTT\n\n"), ".")) == len(found)
    with paragraph_wav.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model=MODEL, file=f, response_format="verbose_json", timestamp_granularities=["segment", "word"],
            prompt="Quarterly report.", temperature=0.0,
        )  # fmt: skip
    assert type(verbose).__name__ == "TranscriptionVerbose" and verbose.language == "en"
    assert 12 < verbose.duration < 15 and verbose.segments
    assert all(0 <= s.start < s.end <= verbose.duration + 0.5 for s in verbose.segments)
    assert verbose.words and all(w.start <= w.end for w in verbose.words)
    WER_THROUGH_DAEMON["paragraph verbose_json"] = round(wer(reference, verbose.text), 3)
    assert (
        max(WER_THROUGH_DAEMON[k] for k in ("paragraph text", "paragraph srt", "paragraph verbose_json"))
        <= MAX_WER
    )


def test_bad_requests_get_clear_errors_and_the_daemon_goes_on(
    speech_daemon: DaemonProcess, speech_model: dict, sentence_wav: Path
) -> None:
    client = sdk(speech_daemon)
    with pytest.raises(openai.BadRequestError) as bad_file:
        client.audio.transcriptions.create(model=MODEL, file=("notes.mp3", b"these are not sounds" * 50))
    assert bad_file.value.code == "bad_audio" and "'notes.mp3'" in bad_file.value.message
    with pytest.raises(openai.BadRequestError) as english_only:
        client.audio.translations.create(model=MODEL, file=sentence_wav.open("rb"))
    assert (
        english_only.value.code == "speech_unsupported" and "cannot translate" in english_only.value.message
    )
    with pytest.raises(openai.BadRequestError) as chat_model:
        client.audio.transcriptions.create(model=SMOLLM2_NAME, file=sentence_wav.open("rb"))
    assert "cannot transcribe audio" in chat_model.value.message and MODEL in chat_model.value.message
    with pytest.raises(openai.NotFoundError):
        client.audio.transcriptions.create(model="no-such-model", file=sentence_wav.open("rb"))
    with pytest.raises(openai.BadRequestError) as speech_for_chat:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert "speech-to-text model" in speech_for_chat.value.message
    with pytest.raises(openai.APIStatusError) as too_large:
        client.audio.transcriptions.create(
            model=MODEL, file=("big.wav", b"\0" * (MAX_UPLOAD_MIB + 1) * 2**20)
        )
    assert too_large.value.status_code == 413 and too_large.value.code == "upload_too_large"
    url = speech_daemon.url + "/v1/audio/transcriptions"
    not_a_form = httpx.post(url, json={"model": MODEL, "file": "x"}, timeout=30)
    assert not_a_form.status_code == 400 and "multipart/form-data" in not_a_form.json()["error"]["message"]
    no_model = httpx.post(url, files={"file": ("s.wav", sentence_wav.read_bytes())}, timeout=30)
    assert no_model.status_code == 400 and "`model` field" in no_model.json()["error"]["message"]
    with sentence_wav.open("rb") as f:  # still serving
        assert wer(SENTENCES[0], client.audio.transcriptions.create(model=MODEL, file=f).text) <= MAX_WER


def test_a_client_that_leaves_abandons_the_transcription(
    speech_daemon: DaemonProcess, speech_model: dict, speech_dir: Path, sentence_wav: Path
) -> None:
    """The daemon closes its connection to the worker when the client goes away, which stops the work."""
    long_ogg = convert(
        speak(PASSAGE, speech_dir / "long-daemon.wav", speed=100), speech_dir / "long.ogg", *FORMATS["ogg"]
    )  # fmt: skip  (about 70 s of speech, compressed below the upload limit)
    speech_daemon.client.start(MODEL)
    log = speech_daemon.home / "logs" / f"speech-{MODEL}.log"
    before = log.read_text().count("abandoned")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(speech_daemon.url + "/v1/audio/transcriptions", data={"model": MODEL},
                   files={"file": ("long.ogg", long_ogg.read_bytes())}, timeout=httpx.Timeout(30, read=1.0))  # fmt: skip
    speech_daemon.wait_for(lambda c: log.read_text().count("abandoned") > before, timeout=30,
                           what="the worker to abandon the transcription")  # fmt: skip
    with sentence_wav.open("rb") as f:
        assert (
            wer(SENTENCES[0], sdk(speech_daemon).audio.transcriptions.create(model=MODEL, file=f).text)
            <= MAX_WER
        )


def test_keep_alive_stops_the_worker_when_idle(
    speech_daemon: DaemonProcess, speech_model: dict, sentence_wav: Path
) -> None:
    with sentence_wav.open("rb") as f:
        sdk(speech_daemon).audio.transcriptions.create(model=MODEL, file=f)
    [worker] = workers(speech_daemon)
    assert state(speech_daemon) == "running"
    speech_daemon.wait_for(lambda c: state(speech_daemon) == "available", timeout=KEEP_ALIVE * 4,
                           what="the keep-alive stop")  # fmt: skip
    assert not worker.is_running() and workers(speech_daemon) == []


def test_a_killed_worker_shows_an_error_and_the_next_request_relaunches_it(
    speech_daemon: DaemonProcess, speech_model: dict, sentence_wav: Path
) -> None:
    client = sdk(speech_daemon)
    with sentence_wav.open("rb") as f:
        client.audio.transcriptions.create(model=MODEL, file=f)
    [worker] = workers(speech_daemon)
    worker.send_signal(signal.SIGKILL)
    view = speech_daemon.wait_for(
        lambda c: (m := speech_daemon.model(MODEL))["state"] == "error" and m,
        timeout=10,
        what="the error state",
    )
    assert "stopped unexpectedly" in view["error"] and "next request starts it again" in view["error"]
    with sentence_wav.open("rb") as f:
        result = client.audio.transcriptions.create(model=MODEL, file=f)
    assert wer(SENTENCES[0], result.text) <= MAX_WER
    assert state(speech_daemon) == "running" and speech_daemon.model(MODEL)["error"] is None
    [relaunched] = workers(speech_daemon)
    assert relaunched.pid != worker.pid


def test_the_control_api_starts_and_stops_a_speech_model(
    speech_daemon: DaemonProcess, speech_model: dict
) -> None:
    """What the tray's model items do."""
    started = speech_daemon.client.start(MODEL)
    assert started["state"] == "running" and len(workers(speech_daemon)) == 1
    [worker] = workers(speech_daemon)
    assert speech_daemon.client.stop(MODEL)["state"] == "available"
    assert not worker.is_running() and workers(speech_daemon) == []


def test_daemon_sigterm_leaves_no_worker(tmp_path: Path, whisper_tiny_en: Path, sentence_wav: Path) -> None:
    daemon = DaemonProcess(tmp_path / "home", free_port(), {"QWENDESK_KEEP_ALIVE": "0"})
    put_speech_model(whisper_tiny_en, daemon.models_dir)
    daemon.start()
    try:
        with sentence_wav.open("rb") as f:
            assert (
                wer(SENTENCES[0], sdk(daemon).audio.transcriptions.create(model=MODEL, file=f).text)
                <= MAX_WER
            )
        [worker] = workers(daemon)
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status is -SIGTERM.
        assert daemon.proc.wait(timeout=30) in (0, -signal.SIGTERM)
        psutil.wait_procs([worker], timeout=10)
        assert not worker.is_running()
        assert "speech worker for whisper-tiny.en stopped" in daemon.output()
    finally:
        daemon.stop()
