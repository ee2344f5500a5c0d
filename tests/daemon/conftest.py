"""Fixtures shared by the daemon's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.daemon.chromium import launch, playwright


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with playwright() as pw:
        browser = launch(pw)
        yield browser
        browser.close()
