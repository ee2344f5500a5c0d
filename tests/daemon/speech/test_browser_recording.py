"""What the chat page will upload: a MediaRecorder recording from real headless Chromium (webm/opus, no
duration in its header), decoded and transcribed by the real worker."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from qwendesk.daemon.speech.audio import decode_audio

from .conftest import WorkerProcess
from .media import SENTENCES, pad_with_silence, wer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
RECORD_MS = 15000  # the paragraph (~13 s) and some of the silence after it
# The recorder as a chat page would run it: the browser's default type (webm/opus in Chromium), 1 s chunks.
RECORD_JS = """async (ms) => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const recorder = new MediaRecorder(stream);
  const chunks = [];
  recorder.ondataavailable = (e) => chunks.push(e.data);
  const stopped = new Promise((resolve) => (recorder.onstop = resolve));
  recorder.start(1000);
  await new Promise((resolve) => setTimeout(resolve, ms));
  recorder.stop();
  await stopped;
  stream.getTracks().forEach((t) => t.stop());
  const bytes = new Uint8Array(await new Blob(chunks).arrayBuffer());
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return {mime: recorder.mimeType, data: btoa(s)};
}"""


@pytest.fixture(scope="module")
def recording(paragraph_wav: Path, speech_dir: Path, artifacts: Path) -> Iterator[tuple[str, bytes]]:
    """(MIME type, bytes) of 15 s recorded from a fake microphone playing the three sentences, then silence.

    Three sentences, not one: under CPU load the fake microphone sometimes drops a few milliseconds, which
    can turn one word of a single sentence into two and push its WER past the bound on its own."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    # The fake microphone loops its file: the silence keeps the speech from starting again within 15 s.
    mic = pad_with_silence(paragraph_wav, speech_dir / "microphone.wav", 5.0)
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={mic}"]  # fmt: skip
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            context = browser.new_context()
            # localhost is a secure context, which getUserMedia requires; the page itself is served here.
            context.route(
                "http://localhost/recorder",
                lambda r: r.fulfill(body="<html></html>", content_type="text/html"),
            )
            page = context.new_page()
            page.goto("http://localhost/recorder")
            result = page.evaluate(RECORD_JS, RECORD_MS)
        finally:
            browser.close()
    data = base64.b64decode(result["data"])
    (artifacts / "chromium-recording.webm").write_bytes(data)
    yield result["mime"], data


def test_chromium_records_webm_opus_and_it_decodes(recording: tuple[str, bytes]) -> None:
    mime, data = recording
    assert mime.startswith("audio/webm") and "opus" in mime
    audio = decode_audio(data, name="the recording")
    assert "webm" in audio.container and audio.codec == "opus"
    assert abs(audio.duration - RECORD_MS / 1000) < 0.6


def test_chromium_recording_transcribes(recording: tuple[str, bytes], worker: WorkerProcess) -> None:
    mime, data = recording
    client = OpenAI(base_url=f"{worker.url}/v1", api_key=worker.key, max_retries=0)
    result = client.audio.transcriptions.create(model="whisper-tiny.en", file=("recording.webm", data, mime))
    assert wer(" ".join(SENTENCES), result.text) <= 0.25, result.text
