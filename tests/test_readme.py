"""README.md stays true: the settings table is generated, and the two set-up commands exist."""

from __future__ import annotations

import re

from qwendesk.daemon.config import markdown_table
from tests.conftest import REPO


def test_settings_table_matches_the_code() -> None:
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- settings:begin -->\n(.*?)\n<!-- settings:end -->", text, re.S)
    assert block, "README.md lost its settings block"
    assert block.group(1) == markdown_table(), "regenerate with: python -m qwendesk.daemon.config"


def test_setup_commands_exist_and_ci_runs_the_test_command() -> None:
    text = (REPO / "README.md").read_text()
    for script in ("installers/run.sh", "tests/run.sh"):
        assert f"bash {script}" in text
        assert (REPO / script).exists()
    assert "bash tests/run.sh" in (REPO / ".ci" / "run").read_text()
