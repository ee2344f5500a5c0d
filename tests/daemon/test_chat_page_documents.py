"""Answers from documents on the chat page, in real headless Chromium: tick collections, ask, and read the
answer with its numbered sources. One test runs the real daemon end to end (its documents collection indexed,
SmolLM2 answering); one feeds the page a canned reply to check every part of how citations are drawn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import SMOLLM2_NAME, DaemonProcess, free_port, link_model
from tests.daemon.chromium import open_page

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

LEAVE = """# Leave policy

## Vacation

Every employee gets 25 vacation days per year. Unused vacation days expire on the 31st of March of the next
year. Ask your manager before you book more than ten vacation days in a row.
"""
REMOTE = """# Remote work

Employees may work from home two days per week after their manager approves it in writing.
"""
REPLY_DONE_JS = "() => !document.getElementById('send').hidden && !!document.querySelector('.msg.assistant')"


@pytest.fixture(scope="module")
def docs_daemon(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path, daemon: DaemonProcess
) -> Iterator[DaemonProcess]:
    """A daemon whose default `documents` collection holds two policies, indexed; SmolLM2 answers."""
    proc = DaemonProcess(tmp_path_factory.mktemp("page-docs-home"), free_port(), {"QWENDESK_KEEP_ALIVE": "0"})
    link_model(smollm2_gguf, proc.models_dir)
    proc.start()
    try:
        folder = Path(httpx.get(proc.url + "/api/collections", timeout=30).json()["documents_folder"])
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "leave-policy.md").write_text(LEAVE)
        (folder / "remote-work.md").write_text(REMOTE)

        def indexed(_client) -> bool:
            listed = httpx.get(proc.url + "/api/collections", timeout=30).json()["collections"]
            docs = next(c for c in listed if c["name"] == "documents")
            return docs["files"] == 2 and docs["chunks"] > 0 and docs["state"] == "ready"

        proc.wait_for(indexed, timeout=180, what="the documents collection to index both files")
        yield proc
    finally:
        proc.stop()


def test_ask_the_documents_and_read_the_sources(docs_daemon: DaemonProcess, browser, artifacts: Path) -> None:
    context, page, errors = open_page(browser, docs_daemon.url)
    try:
        page.wait_for_selector(f"[data-testid=model-select] option[value='{SMOLLM2_NAME}']", state="attached")
        toggle = page.get_by_test_id("docs-toggle")
        toggle.wait_for()
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true"
        box = page.locator("[data-testid=collection-checkbox][value=documents]")
        box.wait_for()
        row = page.locator("label.coll", has=box)
        assert "2 files" in row.inner_text()
        box.check()  # keyboard: the panel moved the focus to the first box; Space ticks it as well
        assert page.get_by_test_id("docs-count").inner_text() == " · 1"

        page.get_by_test_id("system-toggle").click()
        page.get_by_test_id("system-input").fill("Answer in one short sentence.")
        page.get_by_test_id("input").fill("How many vacation days does an employee get per year?")
        with page.expect_request("**/v1/chat/completions") as sent:
            page.get_by_test_id("input").press("Enter")
        assert sent.value.post_data_json["collections"] == ["documents"]
        page.wait_for_function(REPLY_DONE_JS, timeout=240_000)

        answer = page.locator("[data-testid=message-assistant]").last
        assert answer.locator("[data-testid=error]").count() == 0, answer.inner_text()
        sources = answer.locator("[data-testid=citation]")
        assert sources.count() >= 1
        listed = " ".join(sources.all_inner_texts())
        assert "leave-policy.md" in listed and "25 vacation days" in listed
        # Every [n] the model wrote that names a source is a link to it (SmolLM2 may write none).
        for link in answer.locator("a.cite").all():
            target = link.get_attribute("href")[1:]
            assert answer.locator(f"[id='{target}']").count() == 1
        page.screenshot(path=str(artifacts / "chat_page_documents.png"))

        stored = json.loads(page.evaluate("() => localStorage.getItem('qwendesk.chats.v1')"))[0]
        assert stored["collections"] == ["documents"]
        assert any(c["path"].endswith("leave-policy.md") for c in stored["messages"][1]["citations"])
        page.reload()
        page.wait_for_selector("[data-testid=citation]")
        assert page.locator("[data-testid=citation]").count() == sources.count()
        assert not errors, errors
    finally:
        context.close()


# ---- how citations are drawn (canned replies: the page's side of the contract) ----------------------------

COLLECTIONS = {
    "collections": [
        {"name": "handbook", "files": 3, "chunks": 42, "state": "ready", "last_error": None, "progress": None},
        {"name": "papers", "files": 1, "chunks": 5, "state": "indexing", "last_error": None,
         "progress": {"phase": "index", "files_done": 1, "files_total": 4}},
    ],
    "note": None,
    "documents_folder": "/home/me/qwendesk/documents",
}  # fmt: skip
CITATIONS = [
    {"index": 1, "path": "policies/leave.md", "page": None, "heading": "Leave policy > Vacation",
     "text": "Every employee gets 25 vacation days per year."},
    {"index": 2, "path": "remote.pdf", "page": 3, "heading": None,
     "text": "Employees may work from home two days per week. " + "More words. " * 80},
]  # fmt: skip
ANSWER = [
    "You get 25 days [1]",
    " and may work from home twice a week [2]. See also [1, 2]",
    "; `x[1]` is code.",
]


def canned_stream() -> str:
    head = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": SMOLLM2_NAME}
    events = [{**head, "choices": [{"index": 0, "delta": {"content": piece}}]} for piece in ANSWER]
    events.append({**head, "choices": [], "citations": CITATIONS,
                   "retrieval": {"collections": ["handbook"], "mode": "bm25", "note": "Keyword search only."}})  # fmt: skip
    return "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"


def test_citations_link_to_their_sources_and_are_kept(
    daemon: DaemonProcess, browser, artifacts: Path
) -> None:
    context, page, errors = open_page(browser, daemon.url)
    bodies: list[dict] = []

    def answer(route) -> None:
        bodies.append(route.request.post_data_json)
        route.fulfill(status=200, content_type="text/event-stream", body=canned_stream())

    try:
        page.route("**/api/collections", lambda route: route.fulfill(json=COLLECTIONS))
        page.route("**/v1/chat/completions", answer)
        page.reload()
        page.wait_for_selector(f"[data-testid=model-select] option[value='{SMOLLM2_NAME}']", state="attached")

        # The panel, by keyboard: open it, the focus is on the first collection, Space ticks it.
        page.get_by_test_id("docs-toggle").focus()
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.activeElement.value === 'handbook'")
        page.keyboard.press("Space")
        infos = page.locator("label.coll").all_inner_texts()
        assert "3 files · 42 passages" in infos[0]
        assert "1 file · 5 passages · indexing 1/4" in infos[1]
        assert page.get_by_test_id("docs-count").inner_text() == " · 1"

        page.get_by_test_id("input").fill("What about leave and remote work?")
        page.get_by_test_id("input").press("Enter")
        page.wait_for_selector("[data-testid=citation]")
        assert bodies[0]["collections"] == ["handbook"]

        answer_row = page.locator("[data-testid=message-assistant]").last
        bubble = answer_row.locator(".bubble")
        assert bubble.inner_text().startswith("You get 25 days [1] and may work from home twice a week [2]")
        links = bubble.locator("a.cite")
        assert [a.inner_text() for a in links.all()] == ["[1]", "[2]", "[1]", "[2]"]  # [1, 2] is two links
        assert bubble.locator("code").inner_text() == "x[1]"  # code stays code
        items = answer_row.locator("[data-testid=citation]")
        first, second = items.nth(0).inner_text(), items.nth(1).inner_text()
        assert first.startswith("[1]") and "leave.md" in first and "Leave policy > Vacation" in first
        assert "policies/leave.md" in first and "Every employee gets 25 vacation days per year." in first
        assert "remote.pdf" in second and "page 3" in second
        assert second.endswith("…") and len(second) < 420  # a long quote is shortened on the page
        assert "Keyword search only." in answer_row.locator("[data-testid=citations]").inner_text()

        # A [n] link is a keyboard stop; following it moves the focus to its source.
        links.nth(1).focus()
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.dataset.testid") == "citation"
        assert "remote.pdf" in page.evaluate("() => document.activeElement.innerText")
        assert page.url.endswith("/")  # the address does not change
        page.screenshot(path=str(artifacts / "chat_page_citations.png"))

        page.reload()
        page.wait_for_selector("[data-testid=citation]")
        assert page.locator("[data-testid=citation]").count() == 2
        assert page.locator("[data-testid=message-assistant] .bubble a.cite").count() == 4
        assert page.get_by_test_id("docs-count").inner_text() == " · 1"  # the chat keeps its ticks
        stored = json.loads(page.evaluate("() => localStorage.getItem('qwendesk.chats.v1')"))[0]
        assert stored["collections"] == ["handbook"] and stored["messages"][1]["citations"] == CITATIONS

        # A reply whose search found nothing says so instead of listing sources.
        page.unroute("**/v1/chat/completions")
        empty = {"id": "c2", "object": "chat.completion.chunk", "created": 1, "model": SMOLLM2_NAME,
                 "choices": [], "citations": [], "retrieval": {"collections": ["handbook"], "note": None}}  # fmt: skip
        hello = {**empty, "choices": [{"index": 0, "delta": {"content": "Hello."}}]}
        page.route(
            "**/v1/chat/completions",
            lambda route: route.fulfill(
                content_type="text/event-stream",
                body=f"data: {json.dumps(hello)}\n\ndata: {json.dumps(empty)}\n\ndata: [DONE]\n\n",
            ),
        )
        page.get_by_test_id("input").fill("Anything about parking?")
        page.get_by_test_id("input").press("Enter")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=citations]').length === 2")
        last = page.locator("[data-testid=citations]").last.inner_text()
        assert "Nothing in handbook matched" in last
        assert not errors, errors
    finally:
        context.close()


def test_a_daemon_without_documents_shows_no_panel(daemon: DaemonProcess, browser) -> None:
    context, page, _errors = open_page(browser, daemon.url)
    try:
        page.route(
            "**/api/collections", lambda route: route.fulfill(status=404, json={"detail": "Not Found"})
        )
        page.reload()
        page.wait_for_selector(f"[data-testid=model-select] option[value='{SMOLLM2_NAME}']", state="attached")
        page.wait_for_timeout(500)
        assert page.get_by_test_id("docs-toggle").is_hidden()
    finally:
        context.close()
