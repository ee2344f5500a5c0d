"""Dictation on the chat page, in real headless Chromium: a fake microphone plays a sentence spoken by espeak-ng,
MediaRecorder records it, the real daemon transcribes it with the real Whisper tiny.en, and the text lands in
the message box. Without a speech model, or without microphone permission, the button says why it is off."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DaemonProcess, free_port, link_model
from tests.daemon.chromium import launch, open_page, playwright
from tests.daemon.speech.media import SENTENCES, fetch_whisper_tiny_en, pad_with_silence, speak, wer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SPEECH = "whisper-tiny.en"
RECORD_MS = 7000  # the sentence takes about 4.5 s
FAKE_UI = "--use-fake-ui-for-media-stream"  # grants the microphone without asking
# Playwright does not show a multipart body with a Blob in it: the page's fetch reports its form fields instead.
SPY_ON_FORMS_JS = """() => {
  window.sentForms = [];
  const original = window.fetch;
  window.fetch = (path, options) => {
    if (options && options.body instanceof FormData) {
      const fields = {};
      for (const [key, value] of options.body) {
        fields[key] = typeof value === "string" ? value : {name: value.name, type: value.type, size: value.size};
      }
      window.sentForms.push({path: String(path), fields});
    }
    return original(path, options);
  };
}"""
MIC_ENABLED_JS = "() => document.getElementById('mic').getAttribute('aria-disabled') === 'false'"


@pytest.fixture(scope="module")
def pw() -> Iterator:
    with playwright() as pw:
        yield pw


@pytest.fixture(scope="module")
def microphone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first sentence, then silence: the fake microphone loops its file, and a recording shorter than
    the whole holds the sentence once."""
    folder = tmp_path_factory.mktemp("microphone")
    return pad_with_silence(speak(SENTENCES[0], folder / "sentence.wav"), folder / "microphone.wav", 4.0)


@pytest.fixture(scope="module")
def mic_browser(pw, microphone: Path) -> Iterator:
    browser = launch(
        pw, FAKE_UI, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}"
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def speech_daemon(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, daemon: DaemonProcess
) -> Iterator[DaemonProcess]:
    """A daemon with Whisper tiny.en (a CTranslate2 folder) and SmolLM2 in its models folder."""
    proc = DaemonProcess(
        tmp_path_factory.mktemp("page-speech-home"), free_port(), {"QWENDESK_KEEP_ALIVE": "0"}
    )
    whisper = proc.models_dir / SPEECH
    whisper.mkdir(parents=True)
    for file in fetch_whisper_tiny_en().iterdir():
        try:
            os.link(file, whisper / file.name)
        except OSError:
            shutil.copyfile(file, whisper / file.name)
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        proc.wait_for(lambda _c: proc.model(SPEECH), what="the speech model to be listed")
        yield proc
    finally:
        proc.stop()


def mic_state(page) -> dict:
    return page.evaluate(
        "() => { const b = document.getElementById('mic'); return {disabled: b.getAttribute('aria-disabled'),"
        " pressed: b.getAttribute('aria-pressed'), label: b.getAttribute('aria-label'), title: b.title}; }"
    )


def note(page) -> str:
    return page.get_by_test_id("composer-note").inner_text()


def test_dictation_fills_the_message_box(speech_daemon: DaemonProcess, mic_browser, artifacts: Path) -> None:
    listed = {m["id"]: m for m in httpx.get(speech_daemon.url + "/v1/models", timeout=30).json()["data"]}
    assert {"transcriptions"} & set(listed[SPEECH]["capabilities"]) or "transcribe" in listed[SPEECH][
        "capabilities"
    ]
    context, page, errors = open_page(mic_browser, speech_daemon.url)
    try:
        page.wait_for_function(MIC_ENABLED_JS)
        assert SPEECH in mic_state(page)["title"]
        # The speech model answers no chat: it is not in the model picker.
        assert page.locator(f"[data-testid=model-select] option[value='{SPEECH}']").count() == 0

        page.evaluate(SPY_ON_FORMS_JS)
        page.get_by_test_id("input").fill("Reminder:")
        page.get_by_test_id("mic").click()
        page.wait_for_function("() => document.getElementById('mic').getAttribute('aria-pressed') === 'true'")
        assert mic_state(page)["label"] == "Stop recording"
        page.wait_for_timeout(RECORD_MS // 2)
        assert note(page).startswith("Recording 0:0")
        page.screenshot(path=str(artifacts / "chat_page_recording.png"))
        page.wait_for_timeout(RECORD_MS // 2)
        page.get_by_test_id("mic").click()
        page.wait_for_function("() => window.sentForms.length === 1")
        form = page.evaluate("() => window.sentForms[0]")
        assert form["path"] == "/v1/audio/transcriptions"
        assert form["fields"]["model"] == SPEECH
        upload = form["fields"]["file"]
        assert (
            upload["name"] == "recording.webm"
            and upload["type"].startswith("audio/webm")
            and upload["size"] > 10_000
        )

        # The first request starts the speech worker; the text then goes after what was typed.
        page.wait_for_function(
            "() => document.getElementById('input').value.length > 'Reminder:'.length", timeout=120_000
        )
        value = page.get_by_test_id("input").input_value()
        assert value.startswith("Reminder: ")
        assert wer(SENTENCES[0], value.removeprefix("Reminder: ")) <= 0.25, value
        assert note(page) == "" and mic_state(page)["pressed"] == "false"
        assert page.evaluate("() => document.activeElement.id") == "input"
        page.screenshot(path=str(artifacts / "chat_page_dictation.png"))

        # Escape discards a recording: nothing is sent, the box is unchanged.
        sent_audio: list[str] = []
        page.on("request", lambda r: sent_audio.append(r.url) if "/v1/audio/" in r.url else None)
        page.get_by_test_id("mic").click()
        page.wait_for_function("() => document.getElementById('mic').getAttribute('aria-pressed') === 'true'")
        page.wait_for_timeout(1200)
        page.keyboard.press("Escape")
        page.wait_for_function("() => document.getElementById('note').textContent === 'Recording discarded.'")
        page.wait_for_timeout(500)
        assert not sent_audio and page.get_by_test_id("input").input_value() == value
        assert not errors, errors
    finally:
        context.close()


def test_without_a_speech_model_the_microphone_says_why(daemon: DaemonProcess, mic_browser) -> None:
    context, page, errors = open_page(mic_browser, daemon.url)
    try:
        page.wait_for_selector("[data-testid=model-select] option[value]", state="attached")
        state = mic_state(page)
        assert state["disabled"] == "true" and "No speech model" in state["title"]
        # Focusable, and Enter says why instead of recording.
        page.get_by_test_id("mic").focus()
        page.keyboard.press("Enter")
        assert "No speech model" in note(page) and "models folder" in note(page)
        assert mic_state(page)["pressed"] == "false"
        assert not errors, errors
    finally:
        context.close()


def test_a_blocked_microphone_turns_the_button_off(
    speech_daemon: DaemonProcess, pw, microphone: Path
) -> None:
    """A device, but no permission (the fake UI that grants it is off, and nobody answers the prompt)."""
    browser = launch(
        pw, "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}"
    )
    try:
        context, page, _errors = open_page(browser, speech_daemon.url)
        page.wait_for_function(MIC_ENABLED_JS)
        page.get_by_test_id("mic").click()
        page.wait_for_function(
            "() => document.getElementById('mic').getAttribute('aria-disabled') === 'true'"
        )
        assert "microphone is blocked" in note(page) and "site settings" in note(page)
        assert "microphone is blocked" in mic_state(page)["title"]
        assert mic_state(page)["pressed"] == "false"
        context.close()
    finally:
        browser.close()
