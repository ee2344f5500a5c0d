"""The tray under a real X server (Xvfb) with pystray's xorg backend: the icon appears and shows state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from qwendesk.tray.icons import icon_image
from qwendesk.tray.state import IconState

from .xdisplay import (
    ICON_PX,
    have_x_tools,
    host_command,
    mean_difference,
    screenshot,
    spawn,
    tray_command,
    tray_window,
    wait_for,
    wait_title,
    x_env,
    xdotool,
    xvfb,
)

pytestmark = [
    pytest.mark.display,
    pytest.mark.skipif(not have_x_tools(), reason="needs Xvfb, xdotool and ImageMagick"),
]


def expected_icon(state: IconState) -> Image.Image:
    """What pystray's xorg backend should paint: our RGBA icon on black, resized to the tray slot."""
    flat = Image.new("RGBA", icon_image(state, False).size, (0, 0, 0, 255))
    flat.alpha_composite(icon_image(state, False))
    return flat.convert("RGB").resize((ICON_PX, ICON_PX), Image.LANCZOS)


def test_icon_appears_and_says_the_daemon_is_down(tmp_path: Path, artifacts: Path) -> None:
    from tests.conftest import free_port

    with xvfb() as display, spawn(host_command(), x_env(display), tmp_path / "host.log") as host:
        wait_for(lambda: "ready" in (tmp_path / "host.log").read_text(), 30, "the XEmbed tray host")
        env = x_env(display, PYSTRAY_BACKEND="xorg", QWENDESK_HOME=os.environ["QWENDESK_HOME"])
        argv = tray_command("--no-start-daemon", "--port", str(free_port()))
        with spawn(argv, env, tmp_path / "tray.log") as tray:
            window = wait_for(lambda: tray_window(display), 60, "the tray icon window")
            assert "docked" in (tmp_path / "host.log").read_text()
            wait_title(display, window, "qwendesk - daemon not running", 30, tmp_path / "tray.log")
            # Both the whole screen (the test tray with our icon docked) and the icon alone.
            screenshot(display, artifacts / "tray-xorg-daemon-down.png")
            shot = screenshot(display, artifacts / "tray-xorg-icon-offline.png", window)
            assert tray.poll() is None, (tmp_path / "tray.log").read_text()
        assert host.poll() is None
    assert shot.size == (ICON_PX, ICON_PX)
    offline = mean_difference(shot, expected_icon(IconState.OFFLINE))
    idle = mean_difference(shot, expected_icon(IconState.IDLE))
    assert offline < 3, f"the icon on screen is not our offline icon (mean diff {offline:.1f})"
    assert idle > offline + 5  # and it is told apart from the idle one


@pytest.mark.e2e
def test_icon_follows_a_real_daemon(daemon, tmp_path: Path, artifacts: Path) -> None:
    """Against the real daemon: idle icon, then the running icon once SmolLM2 runs, then idle again."""
    from tests.conftest import SMOLLM2_NAME

    daemon.client.stop(SMOLLM2_NAME)  # the session daemon is shared: other tests may have started it
    # The default browser, as Python's webbrowser finds it: $BROWSER, here a script that records the URL.
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    with xvfb() as display, spawn(host_command(), x_env(display), tmp_path / "host.log"):
        wait_for(lambda: "ready" in (tmp_path / "host.log").read_text(), 30, "the XEmbed tray host")
        env = x_env(display, PYSTRAY_BACKEND="xorg", BROWSER=f"{browser} %s", QWENDESK_LOG_LEVEL="debug")
        argv = tray_command("--home", str(daemon.home), "--port", str(daemon.settings.port))
        with spawn(argv, env, tmp_path / "tray.log") as tray:
            window = wait_for(lambda: tray_window(display), 60, "the tray icon window")
            log = daemon.settings.log_dir / "tray.log"  # the tray's own log: each event and icon change
            wait_title(display, window, "qwendesk - no model running", 30, log)
            idle = screenshot(display, artifacts / "tray-xorg-icon-idle.png", window)
            daemon.client.start(SMOLLM2_NAME, wait=True)
            try:
                wait_title(display, window, f"qwendesk - {SMOLLM2_NAME} running", 30, log)
                screenshot(display, artifacts / "tray-xorg-running.png")
                running = screenshot(display, artifacts / "tray-xorg-icon-running.png", window)
            finally:
                daemon.client.stop(SMOLLM2_NAME)
            wait_title(display, window, "qwendesk - no model running", 30, log)
            # A real click on the icon: the xorg backend has no menu, so it runs the default item, Open Chat.
            xdotool(display, "mousemove", "--window", window, "24", "24", "click", "1")
            wait_for(lambda: opened.exists() and opened.read_text().strip(), 20, "the browser to be asked")
            assert opened.read_text().split() == [daemon.url + "/"]
            assert tray.poll() is None, (tmp_path / "tray.log").read_text()
    assert mean_difference(idle, expected_icon(IconState.IDLE)) < 3
    assert mean_difference(running, expected_icon(IconState.RUNNING)) < 3
