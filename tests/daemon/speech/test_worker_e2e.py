"""The real worker process with the real Whisper tiny.en model, driven through the unmodified openai SDK."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from qwendesk.daemon.speech.audio import decode_audio
from qwendesk.daemon.speech.engine import Cancelled, Options, SpeechEngine

from .conftest import WorkerProcess, start_worker
from .media import FORMATS, PASSAGE, SENTENCES, speak, wer

pytestmark = pytest.mark.e2e
MAX_WER = 0.25
MODEL = "whisper-tiny.en"
WER_BY_FORMAT: dict[str, float] = {}


@pytest.fixture(scope="module", autouse=True)
def wer_report(artifacts: Path):
    """Writes the measured word error rates to test-artifacts/speech-wer.json (the figures for FINDINGS)."""
    yield
    if WER_BY_FORMAT:
        (artifacts / "speech-wer.json").write_text(json.dumps(WER_BY_FORMAT, indent=2, sort_keys=True))


def sdk(worker: WorkerProcess, key: str | None = None) -> OpenAI:
    return OpenAI(base_url=f"{worker.url}/v1", api_key=key or worker.key, max_retries=0, timeout=120)


@pytest.mark.parametrize("suffix", sorted(FORMATS))
def test_every_upload_format_transcribes(
    worker: WorkerProcess, sentence_files: dict[str, Path], suffix: str
) -> None:
    with sentence_files[suffix].open("rb") as f:
        result = sdk(worker).audio.transcriptions.create(model=MODEL, file=f)
    score = wer(SENTENCES[0], result.text)
    WER_BY_FORMAT[f"upload {suffix} (json)"] = round(score, 3)
    assert score <= MAX_WER, (suffix, result.text)


def test_json_and_text(worker: WorkerProcess, paragraph_wav: Path) -> None:
    reference = " ".join(SENTENCES)
    client = sdk(worker)
    with paragraph_wav.open("rb") as f:
        as_json = client.audio.transcriptions.create(
            model=MODEL, file=f, response_format="json", language="en"
        )
    with paragraph_wav.open("rb") as f:
        as_text = client.audio.transcriptions.create(model=MODEL, file=f, response_format="text")
    assert isinstance(as_text, str)
    WER_BY_FORMAT["paragraph json"] = round(wer(reference, as_json.text), 3)
    WER_BY_FORMAT["paragraph text"] = round(wer(reference, as_text), 3)
    assert WER_BY_FORMAT["paragraph json"] <= MAX_WER, as_json.text
    assert WER_BY_FORMAT["paragraph text"] <= MAX_WER, as_text
    assert as_text.strip() == as_json.text  # the same decoding, greedy first


CUE = re.compile(r"(\d\d):(\d\d):(\d\d)[.,](\d\d\d) --> (\d\d):(\d\d):(\d\d)[.,](\d\d\d)")


def cues(body: str, marker: str) -> list[tuple[float, float, str]]:
    """(start, end, text) of each SubRip/WebVTT cue, checking the timestamp separator."""
    found = []
    for block in body.strip().split("\n\n"):
        lines = block.split("\n")
        times = next(line for line in lines if "-->" in line)
        assert marker in times.split(" --> ")[0], times
        m = CUE.fullmatch(times)
        assert m, times
        g = [int(x) for x in m.groups()]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        found.append((start, end, " ".join(lines[lines.index(times) + 1 :])))
    return found


def test_srt(worker: WorkerProcess, paragraph_wav: Path) -> None:
    with paragraph_wav.open("rb") as f:
        body = sdk(worker).audio.transcriptions.create(model=MODEL, file=f, response_format="srt")
    assert isinstance(body, str)
    blocks = body.strip().split("\n\n")
    assert [b.split("\n")[0] for b in blocks] == [
        str(i) for i in range(1, len(blocks) + 1)
    ]  # numbered from 1
    found = cues(body, ",")
    assert len(found) >= 2  # three sentences: more than one segment
    assert all(0 <= s < e <= 14.5 for s, e, _ in found)
    assert all(
        a[1] <= b[0] + 0.01 for a, b in zip(found, found[1:], strict=False)
    )  # in order, not overlapping
    WER_BY_FORMAT["paragraph srt"] = round(wer(" ".join(SENTENCES), " ".join(t for *_, t in found)), 3)
    assert WER_BY_FORMAT["paragraph srt"] <= MAX_WER, body


def test_vtt(worker: WorkerProcess, paragraph_wav: Path) -> None:
    with paragraph_wav.open("rb") as f:
        body = sdk(worker).audio.transcriptions.create(model=MODEL, file=f, response_format="vtt")
    assert isinstance(body, str) and body.startswith("WEBVTT\n\n")
    found = cues(body.removeprefix("WEBVTT\n\n"), ".")
    assert len(found) >= 2 and all(0 <= s < e <= 14.5 for s, e, _ in found)
    WER_BY_FORMAT["paragraph vtt"] = round(wer(" ".join(SENTENCES), " ".join(t for *_, t in found)), 3)
    assert WER_BY_FORMAT["paragraph vtt"] <= MAX_WER, body


def test_verbose_json_with_segments_and_words(worker: WorkerProcess, paragraph_wav: Path) -> None:
    duration = decode_audio(paragraph_wav.read_bytes()).duration
    with paragraph_wav.open("rb") as f:
        result = sdk(worker).audio.transcriptions.create(
            model=MODEL, file=f, response_format="verbose_json", timestamp_granularities=["segment", "word"]
        )
    assert type(result).__name__ == "TranscriptionVerbose"
    assert result.language == "en" and abs(result.duration - duration) < 0.01
    assert (result.model_extra or {}).get("task") == "transcribe"
    assert result.segments and len(result.segments) >= 2
    assert [s.id for s in result.segments] == list(range(len(result.segments)))
    for s in result.segments:
        assert 0 <= s.start < s.end <= duration + 0.5 and s.tokens and s.avg_logprob < 0
        assert 0 <= s.no_speech_prob <= 1 and s.compression_ratio > 0 and s.temperature == 0.0
    assert result.text == "".join(s.text for s in result.segments).strip()
    assert result.words and len(result.words) >= 25
    assert all(w.start <= w.end for w in result.words)
    assert all(a.start <= b.start for a, b in zip(result.words, result.words[1:], strict=False))
    WER_BY_FORMAT["paragraph verbose_json"] = round(wer(" ".join(SENTENCES), result.text), 3)
    WER_BY_FORMAT["paragraph verbose_json words"] = round(
        wer(" ".join(SENTENCES), "".join(w.word for w in result.words)), 3
    )
    assert WER_BY_FORMAT["paragraph verbose_json"] <= MAX_WER, result.text
    assert WER_BY_FORMAT["paragraph verbose_json words"] <= MAX_WER


def test_prompt_and_temperature_are_accepted(worker: WorkerProcess, sentence_files: dict[str, Path]) -> None:
    with sentence_files["mp3"].open("rb") as f:
        result = sdk(worker).audio.transcriptions.create(
            model=MODEL, file=f, prompt="Quarterly finance report.", temperature=0.2
        )
    assert wer(SENTENCES[0], result.text) <= MAX_WER, result.text


def test_translation_is_refused_for_an_english_only_model(worker: WorkerProcess, sentence_wav: Path) -> None:
    with sentence_wav.open("rb") as f, pytest.raises(openai.BadRequestError) as info:
        sdk(worker).audio.translations.create(model=MODEL, file=f)
    assert info.value.status_code == 400
    assert info.value.code == "speech_unsupported" and "cannot translate" in info.value.message


def test_another_language_is_refused_for_an_english_only_model(
    worker: WorkerProcess, sentence_wav: Path
) -> None:
    with sentence_wav.open("rb") as f, pytest.raises(openai.BadRequestError) as info:
        sdk(worker).audio.transcriptions.create(model=MODEL, file=f, language="fr")
    assert info.value.code == "speech_unsupported" and "English-only" in info.value.message


def test_bad_file_is_a_clear_400_and_the_worker_goes_on(worker: WorkerProcess, sentence_wav: Path) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        sdk(worker).audio.transcriptions.create(model=MODEL, file=("notes.mp3", b"these are not sounds" * 50))
    assert info.value.code == "bad_audio" and "'notes.mp3'" in info.value.message
    with sentence_wav.open("rb") as f:
        assert wer(SENTENCES[0], sdk(worker).audio.transcriptions.create(model=MODEL, file=f).text) <= MAX_WER


def test_wrong_key_is_refused(worker: WorkerProcess, sentence_wav: Path) -> None:
    with sentence_wav.open("rb") as f, pytest.raises(openai.AuthenticationError):
        sdk(worker, key="not-the-key").audio.transcriptions.create(model=MODEL, file=f)


def test_a_client_that_leaves_does_not_block_the_next(
    worker: WorkerProcess, long_wav: Path, sentence_wav: Path
) -> None:
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{worker.url}/v1/audio/transcriptions", headers=worker.headers(),
                   files={"file": ("long.wav", long_wav.read_bytes())}, timeout=httpx.Timeout(10, read=0.5))  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        health = httpx.get(f"{worker.url}/health", headers=worker.headers()).json()
        if not health["busy"] and not health["transcribing"]:
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"still busy after the client left: {health}")
    assert "abandoned" in worker.output()
    with sentence_wav.open("rb") as f:
        assert wer(SENTENCES[0], sdk(worker).audio.transcriptions.create(model=MODEL, file=f).text) <= MAX_WER


@pytest.fixture(scope="module")
def long_wav(speech_dir: Path) -> Path:
    """About 70 s of slow speech: several 30 s windows, a few seconds of work."""
    return speak(PASSAGE, speech_dir / "long.wav", speed=100)


def test_sigterm_stops_it_even_while_transcribing(
    whisper_tiny_en: Path, long_wav: Path, tmp_path: Path
) -> None:
    w = start_worker(whisper_tiny_en, tmp_path / "worker.log")
    try:

        def transcribe_long() -> None:
            with contextlib.suppress(httpx.HTTPError):  # the worker stops half way: no answer comes
                httpx.post(f"{w.url}/v1/audio/transcriptions", headers=w.headers(),
                           files={"file": ("long.wav", long_wav.read_bytes())}, timeout=60)  # fmt: skip

        client = threading.Thread(target=transcribe_long, daemon=True)
        client.start()
        deadline = time.monotonic() + 10
        while not httpx.get(f"{w.url}/health", headers=w.headers()).json()["transcribing"]:
            assert time.monotonic() < deadline, "the transcription never started"
            time.sleep(0.05)
        started = time.monotonic()
        w.proc.send_signal(signal.SIGTERM)
        w.proc.wait(timeout=15)
        stopped_in = time.monotonic() - started
    finally:
        w.stop()
    assert w.proc.returncode in (0, -signal.SIGTERM), w.output()  # uvicorn re-raises the signal it handled
    assert stopped_in < 10, f"took {stopped_in:.1f} s to stop"  # a bound against hanging, not a speed claim


def test_a_broken_model_exits_3_with_the_reason(tmp_path: Path, whisper_tiny_en: Path) -> None:
    broken = tmp_path / "whisper-broken"
    broken.mkdir()
    for f in whisper_tiny_en.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[: 4096 if f.name == "model.bin" else None])
    result = subprocess.run(
        [sys.executable, "-m", "qwendesk.daemon.speech.worker", "--model", str(broken), "--port", "1", "--key", "k"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "cannot load the model in" in result.stderr.strip().splitlines()[-1]


def test_the_worker_exits_when_its_parent_is_gone(whisper_tiny_en: Path, tmp_path: Path) -> None:
    """A daemon killed with SIGKILL cannot stop its workers: each watches the daemon's pid and leaves."""
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        w = start_worker(whisper_tiny_en, tmp_path / "worker.log", parent=parent.pid)
    finally:
        parent.kill()
        parent.wait()
    try:
        assert w.proc.wait(timeout=15) == 0
        assert "is gone; stopping" in w.output()
    finally:
        w.stop()


def test_cancel_before_start_runs_nothing(whisper_tiny_en: Path, sentence_wav: Path) -> None:
    engine = SpeechEngine(whisper_tiny_en, device="cpu", threads=1)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        engine.transcribe(decode_audio(sentence_wav.read_bytes()).samples, Options(), cancel)
    assert not engine.active
