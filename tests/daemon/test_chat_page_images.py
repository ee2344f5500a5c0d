"""Images on the chat page, in real headless Chromium against a real daemon serving a vision model (random
weights, real graph: tests/fixtures/vision.py) and a text-only one: attach, paste and drop, the OpenAI image
parts sent, a streamed reply, thumbnails kept over a reload, refusals for a model that cannot see."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model
from tests.daemon.chromium import open_page, stop_if_streaming
from tests.daemon.vision.imagefiles import decode_url, encode, pattern
from tests.fixtures.vision import write_qwen2vl_pair

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

VL = "qwen2-vl-tiny-instruct-q8_0"
TEXT_ONLY = "qwen2-tiny-q8_0"
BUDGET = 200_704  # the daemon scales images to 256 image tokens: quick to encode with the tiny tower
MAX_SIDE = 1024  # images.js: the longest side of the one copy shown, stored and sent

# Hands the page a File as a paste into the message box or a drop onto the conversation (what the browser
# does for a real paste or drag).
GIVE_FILE_JS = """([b64, name, type, how]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, {type}));
  if (how === "paste") {
    document.getElementById("input").dispatchEvent(
      new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
  } else {
    const zone = document.getElementById("messages");
    for (const kind of ["dragenter", "dragover", "drop"]) {
      zone.dispatchEvent(new DragEvent(kind, {dataTransfer: data, bubbles: true, cancelable: true}));
    }
  }
}"""
LAST_REPLY_DONE_JS = """() => {
  const b = [...document.querySelectorAll('[data-testid=message-assistant] .bubble')].pop();
  return b && !b.querySelector('.typing') && (b.innerText.trim().length > 0 || !!b.querySelector('.error-box'));
}"""


@pytest.fixture(scope="module")
def vision_daemon(tmp_path_factory: pytest.TempPathFactory, qwen2_gguf: Path) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("page-vision-home")
    proc = DaemonProcess(
        home, free_port(), {"QWENDESK_KEEP_ALIVE": "0", "QWENDESK_IMAGE_MAX_PIXELS": str(BUDGET)}
    )
    write_qwen2vl_pair(proc.models_dir)
    link_model(qwen2_gguf, proc.models_dir)
    proc.start()
    try:
        proc.wait_for(lambda _c: proc.model(VL) and proc.model(TEXT_ONLY), what="both models to be listed")
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1600 x 1200 PNG: larger than what the page keeps, so its scaling shows."""
    path = tmp_path_factory.mktemp("images") / "pattern.png"
    pattern(1600, 1200).save(path)
    return path


def png_b64(w: int, h: int) -> str:
    return base64.b64encode(encode(pattern(w, h), "PNG")).decode()


def wait_for_models(page, *names: str) -> None:
    for name in names:
        page.wait_for_selector(f"[data-testid=model-select] option[value='{name}']", state="attached")


def note(page) -> str:
    return page.get_by_test_id("composer-note").inner_text()


def test_an_image_is_attached_sent_streamed_and_kept(
    vision_daemon: DaemonProcess, browser, artifacts: Path, photo: Path
) -> None:
    context, page, errors = open_page(browser, vision_daemon.url)
    try:
        wait_for_models(page, VL, TEXT_ONLY)
        # The picker marks the model that sees, and says so next to it.
        assert "vision" in page.locator(f"option[value='{VL}']").inner_text()
        assert "vision" not in page.locator(f"option[value='{TEXT_ONLY}']").inner_text()
        page.get_by_test_id("model-select").select_option(VL)
        assert page.get_by_test_id("model-caps").inner_text() == "sees images"

        page.get_by_test_id("file-input").set_input_files(photo)
        page.get_by_test_id("attachment").wait_for()
        natural = page.evaluate(
            "() => { const i = document.querySelector('[data-testid=attachment] img');"
            " return [i.naturalWidth, i.naturalHeight]; }"
        )
        assert natural == [MAX_SIDE, MAX_SIDE * 3 // 4]

        page.get_by_test_id("input").fill("What is in this picture?")
        with page.expect_request("**/v1/chat/completions") as sent:
            page.get_by_test_id("input").press("Enter")
        body = sent.value.post_data_json
        assert body["model"] == VL and body["stream"] is True
        question = body["messages"][-1]
        assert question["role"] == "user"
        text_part, image_part = question["content"]
        assert text_part == {"type": "text", "text": "What is in this picture?"}
        assert image_part["type"] == "image_url"
        url = image_part["image_url"]["url"]
        assert url.startswith(("data:image/jpeg;base64,", "data:image/png;base64,"))
        assert decode_url(url).size == (MAX_SIDE, MAX_SIDE * 3 // 4)
        assert page.get_by_test_id("attachments").is_hidden()  # the composer is empty again

        thumb = page.locator("[data-testid=message-user] [data-testid=thumb]")
        assert thumb.count() == 1 and thumb.get_attribute("src") == url
        assert page.locator("[data-testid=message-user] .bubble").inner_text() == "What is in this picture?"

        # Random weights: any text will do, streamed into the reply; stopped if it runs long.
        page.wait_for_function(LAST_REPLY_DONE_JS, timeout=300_000)
        stop_if_streaming(page)
        page.get_by_test_id("send").wait_for(state="visible")
        reply = page.locator("[data-testid=message-assistant]").last
        assert reply.locator(".error-box").count() == 0, reply.inner_text()
        assert reply.locator(".bubble").inner_text().strip()
        assert "tokens" in page.get_by_test_id("stats").last.inner_text()
        page.screenshot(path=str(artifacts / "chat_page_image.png"))

        # The thumbnail is stored with the conversation, small enough for localStorage.
        stored = page.evaluate("() => localStorage.getItem('qwendesk.chats.v1')")
        assert len(stored) < 600_000
        assert json.loads(stored)[0]["messages"][0]["images"][0]["url"] == url
        page.reload()
        page.wait_for_selector("[data-testid=message-user] [data-testid=thumb]")
        assert page.locator("[data-testid=message-user] [data-testid=thumb]").get_attribute("src") == url
        assert page.evaluate(
            "() => document.querySelector('[data-testid=thumb]').naturalWidth"
        ) == MAX_SIDE  # fmt: skip

        # A click on the thumbnail opens it; Escape closes it (keyboard: the thumbnail is a button).
        page.locator("[data-testid=message-user] .thumb-btn").focus()
        page.keyboard.press("Enter")
        page.get_by_test_id("image-viewer").wait_for(state="visible")
        page.keyboard.press("Escape")
        page.get_by_test_id("image-viewer").wait_for(state="hidden")
        assert not errors, errors
    finally:
        context.close()


def test_paste_drop_remove_and_a_model_that_cannot_see(
    vision_daemon: DaemonProcess, browser, artifacts: Path, photo: Path
) -> None:
    context, page, errors = open_page(browser, vision_daemon.url)
    choosers: list = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    try:
        wait_for_models(page, VL, TEXT_ONLY)
        select = page.get_by_test_id("model-select")
        attachments = page.get_by_test_id("attachment")

        # A text-only model: picking, pasting or the attach button all refuse, and say which model can see.
        select.select_option(TEXT_ONLY)
        assert page.get_by_test_id("model-caps").inner_text() == ""
        page.get_by_test_id("file-input").set_input_files(photo)
        page.wait_for_function("() => document.getElementById('note').textContent.includes('cannot see')")
        assert f"{TEXT_ONLY} cannot see images" in note(page) and VL in note(page)
        page.evaluate(GIVE_FILE_JS, [png_b64(40, 30), "pasted.png", "image/png", "paste"])
        page.get_by_test_id("attach").click()
        page.wait_for_timeout(500)
        assert not choosers, "the file picker opened for a model that cannot see"
        assert attachments.count() == 0

        # The vision model: paste and drop both attach; a file that is no image is refused by name.
        select.select_option(VL)
        page.evaluate(GIVE_FILE_JS, [png_b64(40, 30), "pasted.png", "image/png", "paste"])
        page.wait_for_function("() => document.querySelectorAll('[data-testid=attachment]').length === 1")
        page.evaluate(GIVE_FILE_JS, [png_b64(64, 48), "dropped.png", "image/png", "drop"])
        page.wait_for_function("() => document.querySelectorAll('[data-testid=attachment]').length === 2")
        assert attachments.first.locator("img").get_attribute("alt") == "pasted.png"
        page.evaluate(GIVE_FILE_JS, [base64.b64encode(b"hello").decode(), "notes.txt", "text/plain", "drop"])
        page.wait_for_function("() => document.getElementById('note').textContent.includes('Only images')")
        assert attachments.count() == 2
        with page.expect_file_chooser(timeout=5000):  # the button opens the picker when the model can see
            page.get_by_test_id("attach").click()

        # Removed with the keyboard.
        page.get_by_role("button", name="Remove image 2 (dropped.png)").focus()
        page.keyboard.press("Enter")
        assert attachments.count() == 1

        # Switching to the text-only model with an image waiting: sending is refused, the image stays.
        select.select_option(TEXT_ONLY)
        assert "cannot see images" in note(page)
        page.get_by_test_id("input").fill("Describe it")
        page.get_by_test_id("input").press("Enter")
        page.wait_for_timeout(300)
        assert page.locator("[data-testid=message-user]").count() == 0
        assert attachments.count() == 1 and page.get_by_test_id("input").input_value() == "Describe it"
        page.screenshot(path=str(artifacts / "chat_page_image_refused.png"))
        assert not errors, errors
    finally:
        context.close()


def test_the_daemons_refusal_is_shown_readably(vision_daemon: DaemonProcess, browser, photo: Path) -> None:
    """A model list that claims a text-only model sees (as a stale list might): the daemon's 400 is shown."""
    context, page, _errors = open_page(browser, vision_daemon.url)

    def claim_vision(route) -> None:
        listed = route.fetch().json()
        for model in listed["data"]:
            if model["id"] == TEXT_ONLY:
                model["capabilities"].append("vision")
        route.fulfill(json=listed)

    try:
        page.route("**/v1/models", claim_vision)
        page.reload()
        wait_for_models(page, TEXT_ONLY)
        page.get_by_test_id("model-select").select_option(TEXT_ONLY)
        page.get_by_test_id("file-input").set_input_files(photo)
        page.get_by_test_id("attachment").wait_for()
        page.get_by_test_id("input").fill("What is this?")
        with page.expect_response("**/v1/chat/completions") as answer:
            page.get_by_test_id("send").click()
        assert answer.value.status == 400
        error = page.locator("[data-testid=message-assistant] [data-testid=error]")
        error.wait_for()
        # OpenAI's error body, as words: what is wrong and which model can see.
        assert f"{TEXT_ONLY}' cannot see images" in error.inner_text() and VL in error.inner_text()
        assert "{" not in error.inner_text()
        assert page.locator("[data-testid=message-user] [data-testid=thumb]").count() == 1
    finally:
        context.close()


def test_a_chat_with_images_goes_on_with_a_text_only_model(
    vision_daemon: DaemonProcess, browser, photo: Path
) -> None:
    """Switching to a model that cannot see mid-chat: the earlier image is sent as a marker, not refused."""
    image = {"url": "data:image/png;base64," + png_b64(32, 24), "width": 32, "height": 24, "name": "tiny.png"}
    chat = {
        "id": "seen", "title": "A picture", "model": VL, "system": "", "updated": 1,
        "messages": [
            {"role": "user", "content": "What is this?", "images": [image]},
            {"role": "assistant", "content": "A small pattern.", "model": VL},
        ],
    }  # fmt: skip
    context, page, errors = open_page(browser, vision_daemon.url)
    try:
        page.evaluate(
            "c => { localStorage.setItem('qwendesk.chats.v1', JSON.stringify([c]));"
            " localStorage.setItem('qwendesk.current', c.id); }",
            chat,
        )
        page.reload()
        wait_for_models(page, TEXT_ONLY)
        page.get_by_test_id("model-select").select_option(TEXT_ONLY)
        page.get_by_test_id("input").fill("Say hello.")
        with page.expect_request("**/v1/chat/completions") as sent:
            page.get_by_test_id("input").press("Enter")
        messages = sent.value.post_data_json["messages"]
        assert messages[0] == {"role": "user", "content": "What is this?\n[image]"}
        assert messages[-1] == {"role": "user", "content": "Say hello."}
        page.wait_for_function(LAST_REPLY_DONE_JS, timeout=300_000)
        stop_if_streaming(page)
        page.get_by_test_id("send").wait_for(state="visible")
        assert page.locator("[data-testid=message-assistant] [data-testid=error]").count() == 0
        assert page.locator("[data-testid=message-user] [data-testid=thumb]").count() == 1  # still shown
        assert not errors, errors
    finally:
        context.close()


def test_a_full_browser_storage_is_said_and_the_chat_kept(daemon: DaemonProcess, browser) -> None:
    context, page, _errors = open_page(browser, daemon.url)
    chat = {
        "id": "full", "title": "Kept", "model": SMOLLM2_NAME, "system": "", "updated": 1,
        "messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}],
    }  # fmt: skip
    try:
        page.evaluate(
            "c => { localStorage.setItem('qwendesk.chats.v1', JSON.stringify([c]));"
            " localStorage.setItem('qwendesk.current', c.id); }",
            chat,
        )
        page.reload()
        page.wait_for_selector("[data-testid=message-user]")
        # Fill the origin's storage to the brim, then change the chat: the save fails and the page says so.
        page.evaluate(
            """() => { let size = 1 << 20;
                 for (let i = 0; size >= 1; i++) {
                   try { localStorage.setItem('filler' + i, 'x'.repeat(size)); } catch (e) { size >>= 1; }
                 } }"""
        )
        page.get_by_test_id("system-toggle").click()
        page.get_by_test_id("system-input").fill("A long system prompt that no longer fits.")
        assert "Browser storage is full" in note(page)
        assert page.locator("[data-testid=message-user] .bubble").inner_text() == "hello"  # nothing lost
        page.evaluate(
            "() => Object.keys(localStorage).filter(k => k.startsWith('filler'))"
            ".forEach(k => localStorage.removeItem(k))"
        )
        page.get_by_test_id("system-input").fill("Fits again.")
        assert note(page) == ""
    finally:
        context.close()
