"""Tray icons drawn with Pillow at run time: a speech bubble whose look says the state.

Two styles: `template` (macOS: pure black on transparent, the menu bar tints it for light and dark
themes, so the state is told by the glyph alone) and `colour` (Windows / Linux: a light bubble with
a dark outline that reads on dark and light panels, plus a coloured badge for the state).
"""

from __future__ import annotations

from functools import lru_cache

from PIL import Image, ImageChops, ImageDraw

from .state import IconState

SIZE = 64
_SCALE = 4  # draw large and shrink: cheap anti-aliasing

BADGE_COLOURS = {
    IconState.RUNNING: (46, 184, 46, 255),
    IconState.LOADING: (245, 166, 35, 255),
    IconState.ERROR: (224, 52, 58, 255),
    IconState.IDLE: (150, 150, 150, 255),
    IconState.OFFLINE: (110, 110, 110, 255),
}
BUBBLE_FILL = (236, 236, 236, 255)
BUBBLE_LINE = (40, 40, 40, 255)


def _bubble_mask(n: int, inset: float = 0.0) -> Image.Image:
    """Alpha mask of the speech bubble (rounded box with a tail at the lower left)."""
    mask = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(mask)
    i = inset * n
    d.rounded_rectangle(
        (0.06 * n + i, 0.10 * n + i, 0.94 * n - i, 0.70 * n - i), radius=0.2 * n - i, fill=255
    )
    if inset < 0.06:
        d.polygon(
            [(0.24 * n + i, 0.66 * n), (0.18 * n + i, 0.92 * n - i), (0.46 * n - i, 0.66 * n)], fill=255
        )
    return mask


def _outline_mask(n: int) -> Image.Image:
    return ImageChops.subtract(_bubble_mask(n), _bubble_mask(n, inset=0.075))


def _dots_mask(n: int) -> Image.Image:
    mask = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(mask)
    r = 0.055 * n
    for cx in (0.32, 0.5, 0.68):
        d.ellipse((cx * n - r, 0.40 * n - r, cx * n + r, 0.40 * n + r), fill=255)
    return mask


def _bang_mask(n: int) -> Image.Image:
    """An exclamation mark inside the bubble."""
    mask = Image.new("L", (n, n), 0)
    d = ImageDraw.Draw(mask)
    d.rounded_rectangle((0.45 * n, 0.18 * n, 0.55 * n, 0.47 * n), radius=0.04 * n, fill=255)
    d.ellipse((0.445 * n, 0.52 * n, 0.555 * n, 0.63 * n), fill=255)
    return mask


def _slash_mask(n: int) -> Image.Image:
    mask = Image.new("L", (n, n), 0)
    ImageDraw.Draw(mask).line((0.12 * n, 0.08 * n, 0.88 * n, 0.92 * n), fill=255, width=int(0.08 * n))
    return mask


def _glyph_mask(state: IconState, n: int) -> Image.Image:
    """The template glyph: the shape alone carries the state."""
    if state == IconState.RUNNING:
        return _bubble_mask(n)
    if state == IconState.ERROR:
        return ImageChops.subtract(_bubble_mask(n), _bang_mask(n))
    if state == IconState.LOADING:
        return ImageChops.add(_outline_mask(n), _dots_mask(n))
    if state == IconState.OFFLINE:
        # Outline with a slash, the slash cut free of the outline so it reads at 16 px.
        return ImageChops.add(_outline_mask(n), _slash_mask(n))
    return _outline_mask(n)


def _shrink(image: Image.Image, size: int) -> Image.Image:
    return image.resize((size, size), Image.LANCZOS)


def template_icon(state: IconState, size: int = SIZE) -> Image.Image:
    """Black-on-transparent macOS template image."""
    n = size * _SCALE
    image = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    image.putalpha(_glyph_mask(state, n))
    return _shrink(image, size)


def colour_icon(state: IconState, size: int = SIZE) -> Image.Image:
    """Light bubble with a dark outline and a state badge (Windows, Linux)."""
    n = size * _SCALE
    image = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    body = Image.new("RGBA", (n, n), BUBBLE_FILL)
    line = Image.new("RGBA", (n, n), BUBBLE_LINE)
    image.paste(body, mask=_bubble_mask(n))
    image.paste(line, mask=_outline_mask(n))
    if state == IconState.LOADING:
        image.paste(line, mask=_dots_mask(n))
    if state == IconState.ERROR:
        image.paste(Image.new("RGBA", (n, n), BADGE_COLOURS[IconState.ERROR]), mask=_bang_mask(n))
    if state == IconState.OFFLINE:
        image.putalpha(image.getchannel("A").point(lambda a: a * 45 // 100))
    badge = ImageDraw.Draw(image)
    r = 0.2 * n
    cx, cy = 0.78 * n, 0.78 * n
    badge.ellipse(
        (cx - r, cy - r, cx + r, cy + r), fill=BADGE_COLOURS[state], outline=BUBBLE_LINE, width=n // 48
    )
    return _shrink(image, size)


@lru_cache(maxsize=32)
def icon_image(state: IconState, template: bool, size: int = SIZE) -> Image.Image:
    """The cached icon for a state (callers must not modify it)."""
    return template_icon(state, size) if template else colour_icon(state, size)
