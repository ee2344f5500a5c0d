"""Document indexing in the tray: progress in the title and the menu from /api/events, and the documents folder."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from qwendesk.tray.menu import OPEN_DOCUMENTS_FOLDER, build_menu_model
from qwendesk.tray.state import DaemonPhase, TrayState, apply_event, daemon_down, indexing_text, title_text

from .fakes import FakeClient
from .helpers import status
from .test_app import items, make_app


@pytest.fixture
def client() -> FakeClient:
    return FakeClient()


UP = apply_event(TrayState(), "snapshot", {"models": [], "status": status("stopped")})


def progress(name: str, phase: str, **counts: int) -> dict:
    return {"collection": name, "phase": phase, **counts}


def test_indexing_progress_shows_in_the_title_until_done() -> None:
    assert title_text(UP) == "qwendesk — no model running" and indexing_text(UP) is None
    state = apply_event(UP, "indexing", progress("notes", "scan"))
    assert title_text(state) == "qwendesk — no model running · indexing notes"
    state = apply_event(state, "indexing", progress("notes", "index", files_done=40, files_total=120))
    assert title_text(state) == "qwendesk — no model running · indexing notes 40/120 files"
    state = apply_event(state, "indexing", progress("notes", "embed", chunks_done=300, chunks_total=900))
    assert title_text(state) == "qwendesk — no model running · embedding notes 300/900 chunks"
    both = apply_event(state, "indexing", progress("documents", "index", files_done=1, files_total=2))
    assert indexing_text(both) == "indexing 2 collections"
    done = apply_event(both, "indexing", progress("documents", "done"))
    assert indexing_text(done) == "embedding notes 300/900 chunks"
    settled = apply_event(done, "collection", {"name": "notes", "state": "ready"})  # a missed "done"
    assert settled.indexing == {} and title_text(settled) == "qwendesk — no model running"
    assert apply_event(done, "collection", {"name": "notes", "state": "embedding"}).indexing == done.indexing
    assert apply_event(done, "collection", {"name": "notes", "removed": True}).indexing == {}


def test_a_lost_daemon_forgets_the_progress() -> None:
    state = apply_event(UP, "indexing", progress("notes", "index", files_done=1, files_total=3))
    down = daemon_down(state)
    assert down.daemon == DaemonPhase.DOWN and down.indexing == {}
    assert title_text(down) == "qwendesk — daemon not running"


def test_the_menu_says_what_is_indexed_and_opens_the_documents_folder() -> None:
    specs = build_menu_model(UP)
    assert not any(s.text.startswith("Documents:") for s in specs)
    item = next(s for s in specs if s.text == "Open Documents Folder")
    assert item.action == OPEN_DOCUMENTS_FOLDER and item.enabled
    busy = apply_event(UP, "indexing", progress("notes", "index", files_done=2, files_total=5))
    line = next(s for s in build_menu_model(busy) if s.text.startswith("Documents:"))
    assert line.text == "Documents: indexing notes 2/5 files" and not line.enabled


def test_open_documents_folder_opens_the_default_collection(
    client: FakeClient, pystray_dummy: ModuleType
) -> None:
    opened: list[Path] = []
    app = make_app(client, pystray_dummy, folder_opener=opened.append)
    app.on_action(OPEN_DOCUMENTS_FOLDER).result(5)
    assert opened == [app.settings.data_dir / "documents"] == [app.settings.documents_dir]
    app.on_event("snapshot", {"models": [], "status": status("stopped")})
    app.on_event("indexing", progress("notes", "index", files_done=3, files_total=9))
    assert app.icon.title == "qwendesk — no model running · indexing notes 3/9 files"
    assert any(i.text == "Documents: indexing notes 3/9 files" for i in items(app))
