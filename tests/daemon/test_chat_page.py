"""The chat page in real headless Chromium against a real daemon: pick, send, stream, stop, reload, token."""

from __future__ import annotations

import contextlib
import functools
import http.server
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port
from tests.daemon.chromium import open_page, stop_if_streaming
from tests.daemon.vision.imagefiles import data_url, encode, pattern

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

STATIC = Path(__file__).resolve().parents[2] / "daemon" / "static"


def assistant_text(page) -> str:
    return page.locator("[data-testid=message-assistant] .bubble").last.inner_text()


def test_assets_ship_in_the_package_and_load_nothing_remote() -> None:
    names = {p.name for p in STATIC.iterdir()}
    scripts = {"markdown.js", "api.js", "images.js", "voice.js", "citations.js", "chat.js"}
    assert {"index.html", "chat.css", "icon.svg", *scripts} <= names
    # Every module is loaded by the page as a plain script from /static/ (the CSP forbids inline ones).
    html = (STATIC / "index.html").read_text()
    assert {f'<script src="/static/{name}"></script>' in html for name in scripts} == {True}
    assert "<script>" not in html and " on" + "click=" not in html
    for path in STATIC.iterdir():
        text = path.read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") or path.suffix == ".js"
        assert "https://" not in text or path.suffix == ".js"  # markdown.js only *matches* https links
        assert "cdn" not in text.lower()


def test_chat_streams_stops_and_survives_a_reload(daemon: DaemonProcess, browser, artifacts: Path) -> None:
    daemon.wait_for(lambda c: daemon.model(SMOLLM2_NAME), what="SmolLM2 to be listed")
    context, page, errors = open_page(browser, daemon.url)
    try:
        select = page.get_by_test_id("model-select")
        page.wait_for_selector(f"[data-testid=model-select] option[value='{SMOLLM2_NAME}']", state="attached")
        select.select_option(SMOLLM2_NAME)

        page.get_by_test_id("system-toggle").click()
        page.get_by_test_id("system-input").fill("You are a patient counting assistant.")

        page.get_by_test_id("input").fill("Count from 1 to 400, one number per line, with no other text.")
        page.get_by_test_id("input").press("Enter")
        stop = page.get_by_test_id("stop")
        stop.wait_for(state="visible")
        assert page.get_by_test_id("send").is_hidden()

        # Tokens appear while the reply is still streaming, and keep coming.
        page.wait_for_function(
            "() => { const b = [...document.querySelectorAll('[data-testid=message-assistant] .bubble')].pop();"
            " return b && b.innerText.trim().length > 20; }",
            timeout=180_000,
        )
        first = assistant_text(page)
        # Click Stop in the same tick as more text is seen: a pointer click waits for the button to be still,
        # and on a busy machine the reply could end meanwhile.
        outcome = page.wait_for_function(
            "n => { const b = [...document.querySelectorAll('[data-testid=message-assistant] .bubble')].pop();"
            " if (b.innerText.length <= n) return false;"
            " const stop = document.getElementById('stop');"
            " if (stop.hidden) return 'finished'; stop.click(); return 'stopped'; }",
            arg=len(first),
            timeout=60_000,
        ).json_value()
        assert outcome == "stopped", "the reply finished before we could stop it"
        page.get_by_test_id("send").wait_for(state="visible")
        stats = page.get_by_test_id("stats").last.inner_text()
        assert "stopped" in stats and "tok/s" in stats, stats
        stopped_text = assistant_text(page)
        assert stopped_text.strip()

        # A second message in the same chat streams into a second reply (stopped again to keep the test short).
        page.get_by_test_id("input").fill("Thanks! Now write a short poem about the sea.")
        page.get_by_test_id("send").click()
        page.wait_for_function(
            "() => { const b = [...document.querySelectorAll('[data-testid=message-assistant] .bubble')];"
            " const done = !document.getElementById('send').hidden;"
            " return b.length === 2 && b[1].innerText.trim().length > 0 && (done || b[1].innerText.length > 40); }",
            timeout=180_000,
        )
        stop_if_streaming(page)
        page.get_by_test_id("send").wait_for(state="visible")
        assert page.locator("[data-testid=message-assistant]").count() == 2
        page.screenshot(path=str(artifacts / "chat_page_light.png"))

        page.reload()
        page.wait_for_selector("[data-testid=message-user]")
        users = page.locator("[data-testid=message-user] .bubble").all_inner_texts()
        assert users[0].startswith("Count from 1 to 400") and len(users) == 2
        assert page.locator("[data-testid=message-assistant] .bubble").first.inner_text() == stopped_text
        assert page.get_by_test_id("history-item").count() == 1
        page.get_by_test_id("system-toggle").click()
        assert page.get_by_test_id("system-input").input_value() == "You are a patient counting assistant."

        page.get_by_test_id("new-chat").click()
        assert page.locator("[data-testid=message-user]").count() == 0
        assert page.locator("#empty").is_visible()
        assert not [e for e in errors if "favicon" not in e], errors
    finally:
        context.close()


def test_markdown_code_and_dark_mode(daemon: DaemonProcess, browser, artifacts: Path) -> None:
    context, page, errors = open_page(browser, daemon.url, scheme="dark")
    try:
        html = page.evaluate(
            "() => qdMarkdown.render('# Title\\n\\nSome **bold** and `code` <script>x</script>\\n\\n"
            '```python\\nprint("<hi>")\\n```\\n\\n- one\\n- two\\n\\n[link](https://example.org)\')'
        )
        assert "<strong>bold</strong>" in html and "<code>code</code>" in html
        assert "&lt;script&gt;" in html and "<script>" not in html
        assert 'class="language-python"' in html and "print(&quot;&lt;hi&gt;&quot;)" in html
        assert "<ul><li>one</li><li>two</li></ul>" in html
        assert 'rel="noopener noreferrer"' in html
        # A stored conversation with markdown, an image and a source, shown in dark mode.
        picture = data_url(encode(pattern(160, 120), "PNG"))
        chat = {
            "id": "demo",
            "title": "Sort a list in Python",
            "model": SMOLLM2_NAME,
            "system": "",
            "updated": 1,
            "messages": [
                {
                    "role": "user",
                    "content": "How do I sort a list of words by length in Python?",
                    "images": [{"url": picture, "width": 160, "height": 120, "name": "words.png"}],
                },
                {
                    "role": "assistant",
                    "model": SMOLLM2_NAME,
                    "content": "Use **`sorted`** with a `key` [1]:\n\n```python\nwords = ['pear', 'fig', 'banana']\n"
                    "print(sorted(words, key=len))\n```\n\n1. `key=len` sorts by length\n"
                    "2. add `reverse=True` for longest first",
                    "stats": {"tokens": 48, "tps": 61.3},
                    "citations": [
                        {
                            "index": 1,
                            "path": "python/howto/sorting.md",
                            "page": None,
                            "heading": "Key functions",
                            "text": "Both list.sort() and sorted() have a key parameter to specify a function.",
                        },
                    ],  # fmt: skip
                },
            ],
        }
        page.evaluate(
            "c => { localStorage.setItem('qwendesk.chats.v1', JSON.stringify([c]));"
            " localStorage.setItem('qwendesk.current', c.id); }",
            chat,
        )
        page.reload()
        page.wait_for_selector(".code pre code.language-python")
        assert "61.3 tok/s" in page.get_by_test_id("stats").last.inner_text()
        assert page.locator("[data-testid=thumb]").count() == 1 and page.locator("a.cite").count() == 1
        assert "sorting.md" in page.get_by_test_id("citation").inner_text()
        bg = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert bg == "rgb(21, 22, 26)", bg  # the dark palette applies
        page.screenshot(path=str(artifacts / "chat_page_dark.png"))
        assert not errors, errors
    finally:
        context.close()


@contextlib.contextmanager
def foreign_site() -> Iterator[str]:
    """Another origin on this machine: a plain HTTP server with an empty page."""
    empty = tempfile.mkdtemp()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=empty)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def token_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    proc = DaemonProcess(
        tmp_path_factory.mktemp("token-home"), free_port(), {"QWENDESK_TOKEN": "page-token-1"}
    )
    proc.client = type(proc.client)(proc.url, "page-token-1", timeout=60)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def test_page_asks_for_the_token_once_and_other_origins_are_refused(
    token_daemon: DaemonProcess, browser
) -> None:
    context, page, _errors = open_page(browser, token_daemon.url)
    try:
        dialog = page.get_by_test_id("token-dialog")
        dialog.wait_for(state="visible")
        page.get_by_test_id("token-input").fill("page-token-1")
        page.get_by_test_id("token-save").click()
        dialog.wait_for(state="hidden")
        page.wait_for_function("() => document.getElementById('status').textContent === ''")
        page.reload()
        page.wait_for_timeout(1500)
        assert not dialog.is_visible(), "the token is asked for only once"
        assert page.evaluate("() => localStorage.getItem('qwendesk.token')") == "page-token-1"

        # A page on another origin cannot use the API, even with the token.
        status = page.evaluate(
            """async url => {
                 const r = await fetch(url + '/v1/models', {headers: {Authorization: 'Bearer page-token-1'}});
                 return r.status; }""",
            token_daemon.url,
        )
        assert status == 200
        other = httpx.get(
            token_daemon.url + "/v1/models",
            headers={"Origin": "http://localhost:9", "Authorization": "Bearer page-token-1"},
            timeout=30,
        )
        assert other.status_code == 403
        # The page and its assets need no token; nothing outside the static folder is served.
        assert httpx.get(token_daemon.url + "/static/chat.js", timeout=30).status_code == 200
        assert httpx.get(token_daemon.url + "/chat", timeout=30, follow_redirects=True).status_code == 200
        assert httpx.get(token_daemon.url + "/static/%2e%2e/app.py", timeout=30).status_code == 404
        with foreign_site() as origin:
            page.goto(origin + "/")
            outcome = page.evaluate(
                """async url => {
                     try {
                       const r = await fetch(url + '/v1/models', {headers: {Authorization: 'Bearer page-token-1'}});
                       return 'read ' + r.status;
                     } catch (e) { return 'blocked'; } }""",
                token_daemon.url,
            )
        assert outcome == "blocked"
    finally:
        context.close()


# Each control's accessible name: aria-label, a <label>, or its own text.
CONTROL_NAMES_JS = """() => [...document.querySelectorAll('button, input, select, textarea')]
  .filter((e) => e.type !== 'file')
  .map((e) => [e.id || e.dataset.testid || e.outerHTML.slice(0, 60),
               (e.getAttribute('aria-label') || (e.labels && e.labels[0] && e.labels[0].innerText)
                || e.innerText || '').trim()])"""


def test_every_control_is_named_and_reached_by_keyboard(daemon: DaemonProcess, browser) -> None:
    context, page, errors = open_page(browser, daemon.url)
    try:
        page.wait_for_selector(f"[data-testid=model-select] option[value='{SMOLLM2_NAME}']", state="attached")
        page.get_by_test_id("docs-toggle").wait_for()
        unnamed = [control for control, name in page.evaluate(CONTROL_NAMES_JS) if not name]
        assert not unnamed, unnamed
        reached = set()
        page.locator("body").focus()
        for _ in range(20):
            page.keyboard.press("Tab")
            reached.add(page.evaluate("() => document.activeElement.id"))
        assert {
            "new-chat",
            "model",
            "docs-toggle",
            "system-toggle",
            "attach",
            "input",
            "mic",
            "send",
        } <= reached
        assert not errors, errors
    finally:
        context.close()
