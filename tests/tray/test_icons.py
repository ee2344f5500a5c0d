"""Icons: one distinct image per state; macOS template images are pure black on transparent."""

from __future__ import annotations

import pytest

from qwendesk.tray.icons import BADGE_COLOURS, SIZE, colour_icon, icon_image, template_icon
from qwendesk.tray.state import IconState


@pytest.mark.parametrize("state", list(IconState))
def test_template_icon_is_black_with_alpha(state: IconState) -> None:
    image = template_icon(state)
    assert image.mode == "RGBA" and image.size == (SIZE, SIZE)
    r, g, b, a = image.split()
    assert r.getextrema() == g.getextrema() == b.getextrema() == (0, 0)
    lo, hi = a.getextrema()
    assert lo == 0 and hi == 255  # transparent background, opaque glyph


@pytest.mark.parametrize("template", [True, False])
def test_every_state_looks_different(template: bool) -> None:
    images = [icon_image(state, template).tobytes() for state in IconState]
    assert len(set(images)) == len(IconState)


@pytest.mark.parametrize("state", [IconState.RUNNING, IconState.LOADING, IconState.ERROR])
def test_colour_icon_carries_the_state_colour(state: IconState) -> None:
    image = colour_icon(state)
    wanted = BADGE_COLOURS[state][:3]
    rgb = image.convert("RGB")
    pixels = [rgb.getpixel((x, y)) for y in range(rgb.height) for x in range(rgb.width)]
    close = sum(1 for p in pixels if all(abs(c - w) < 12 for c, w in zip(p, wanted, strict=True)))
    assert close > 40, f"badge colour {wanted} barely present ({close} px)"


def test_icon_image_is_cached() -> None:
    assert icon_image(IconState.IDLE, False) is icon_image(IconState.IDLE, False)
