"""The pystray adapter: rendering specs to pystray menus, macOS template images, UI-thread calls."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from qwendesk.tray import backend
from qwendesk.tray.menu import SEPARATOR, MenuItemSpec


def test_render_menu_maps_every_field(pystray_dummy: ModuleType) -> None:
    clicked: list[str] = []
    specs = [
        MenuItemSpec("Status", enabled=False),
        SEPARATOR,
        MenuItemSpec("qwen", "stop:qwen", checked=True),
        MenuItemSpec("other", "start:other", checked=False),
        MenuItemSpec("busy — starting…", checked=False, enabled=False),
        MenuItemSpec("Open Chat", "open_chat", default=True),
    ]
    menu = pystray_dummy.Menu(*backend.render_menu(pystray_dummy, specs, clicked.append))
    items = list(menu)
    assert [i.text for i in items] == ["Status", "- - - -", "qwen", "other", "busy — starting…", "Open Chat"]
    assert items[1] is pystray_dummy.Menu.SEPARATOR
    assert [i.checked for i in items] == [None, None, True, False, False, None]
    assert [i.enabled for i in items] == [False, True, True, True, False, True]
    assert items[5].default
    items[2](None)
    items[5](None)
    menu(None)  # activating the icon runs the default item
    assert clicked == ["stop:qwen", "open_chat", "open_chat"]


def test_template_icon_class_marks_the_image_as_template() -> None:
    class FakeNSImage:
        def __init__(self) -> None:
            self.template = False

        def isTemplate(self) -> bool:  # noqa: N802 - AppKit's spelling
            return self.template

        def setTemplate_(self, value: bool) -> None:  # noqa: N802
            self.template = value

    class Button:
        image: Any = None

        def setImage_(self, image: Any) -> None:  # noqa: N802
            self.image = image

    class StatusItem:
        def __init__(self) -> None:
            self._button = Button()

        def button(self) -> Button:
            return self._button

    class DarwinIcon:
        def __init__(self) -> None:
            self._status_item = StatusItem()
            self._icon_image: Any = None

        def _assert_image(self) -> None:
            self._icon_image = FakeNSImage()
            self._status_item.button().setImage_(self._icon_image)

    icon = backend.template_icon_class(DarwinIcon)()
    icon._assert_image()
    assert icon._icon_image.template is True
    assert icon._status_item.button().image is icon._icon_image


def test_icon_class_is_plain_off_macos(pystray_dummy: ModuleType) -> None:
    assert backend.icon_class(pystray_dummy, platform="linux") is pystray_dummy.Icon
    # On darwin only pystray's darwin Icon is wrapped; another backend stays as it is.
    assert backend.icon_class(pystray_dummy, platform="darwin") is pystray_dummy.Icon


def test_ui_caller_calls_directly_off_macos() -> None:
    calls: list[int] = []
    backend.ui_caller("linux")(lambda: calls.append(1))
    assert calls == [1]


def test_hide_dock_icon_is_a_no_op_elsewhere() -> None:
    backend.hide_dock_icon("linux")
    backend.hide_dock_icon("darwin")  # no AppKit here: must not raise


class _XorgIcon:
    """Stands in for pystray._xorg.Icon where only the module name matters."""

    __module__ = "pystray._xorg"


def test_xorg_titles_are_latin1_and_images_flattened() -> None:
    from PIL import Image

    assert backend.prepare_title(_XorgIcon, "qwendesk — starting…") == "qwendesk - starting..."
    assert backend.prepare_title(_XorgIcon, "模型 running") == "?? running"
    assert backend.prepare_title(object, "qwendesk — starting…") == "qwendesk — starting…"
    rgba = Image.new("RGBA", (4, 4), (200, 100, 50, 128))
    flat = backend.prepare_image(_XorgIcon, rgba)
    assert flat.mode == "RGB" and flat.getpixel((0, 0)) == (100, 50, 25)  # composited onto black
    assert backend.prepare_image(object, rgba) is rgba


def test_flush_only_touches_xorg_displays() -> None:
    class Display:
        flushed = 0

        def flush(self) -> None:
            self.flushed += 1

    xorg, other = _XorgIcon(), object.__new__(type("Other", (), {}))
    xorg._display = Display()
    other._display = Display()
    backend.flush(xorg)
    backend.flush(other)
    assert xorg._display.flushed == 1 and other._display.flushed == 0


def test_xlib_unstuck_flushes_from_another_thread_until_the_block_ends() -> None:
    """A block stuck until some flush happens (python-xlib's lost wake-up) is released by the helper."""
    import threading

    class Display:
        def __init__(self) -> None:
            self.flushed = threading.Event()
            self.threads: set[str] = set()

        def flush(self) -> None:
            self.threads.add(threading.current_thread().name)
            self.flushed.set()

    icon = _XorgIcon()
    icon._display = Display()
    with backend.xlib_unstuck(icon, every=0.05):
        assert icon._display.flushed.wait(5), "no flush came while the block was stuck"
    assert icon._display.threads == {"qwendesk-tray-xlib"}
    icon._display.flushed.clear()
    assert not icon._display.flushed.wait(0.2)  # the helper stopped with the block

    other = object.__new__(type("Other", (), {}))
    other._display = Display()
    with backend.xlib_unstuck(other, every=0.05):
        assert not other._display.flushed.wait(0.2)  # other backends are left alone
