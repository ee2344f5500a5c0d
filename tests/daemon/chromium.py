"""Headless Chromium for the page tests (Debian's chromium driven by Playwright)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def playwright() -> Iterator:
    """Playwright's sync API (one per thread at a time: launch every browser of a module from it)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        yield pw


def launch(pw, *extra_args: str):
    """Headless Chromium with the page tests' flags, and `extra_args`."""
    return pw.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra_args])


def open_page(browser, url: str, scheme: str = "light"):
    context = browser.new_context(viewport={"width": 1200, "height": 780}, color_scheme=scheme)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url + "/")
    return context, page, errors


def stop_if_streaming(page) -> bool:
    """Click Stop if a reply is still streaming, in one tick of the page: a pointer click first waits for the
    button to be still, and the reply may end meanwhile. True if it was clicked."""
    return page.evaluate(
        "() => { const stop = document.getElementById('stop');"
        " if (stop.hidden) return false; stop.click(); return true; }"
    )
