"""The thin adapter to pystray and the platform: menu rendering, macOS template icons, UI-thread calls."""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

from qwendesk.daemon.errors import QwendeskError

from .menu import MenuItemSpec

log = logging.getLogger(__name__)

NSApplicationActivationPolicyAccessory = 1  # menu-bar only: no Dock icon, no app menu


def load_pystray() -> ModuleType:
    """Import pystray, turning "no desktop here" into an error that says what to do."""
    try:
        return importlib.import_module("pystray")
    except ImportError as exc:
        raise QwendeskError(
            f"The tray needs pystray and Pillow ({exc}). Install them with: pip install 'qwendesk[tray]'."
        ) from exc
    except Exception as exc:  # python-xlib raises its own errors when DISPLAY is unset or unreachable
        raise QwendeskError(
            f"No desktop session to show a tray icon in ({exc}). Run `qwendesk tray` from your desktop "
            "session, or use `qwendesk serve` without a tray."
        ) from exc


def render_menu(
    pystray: ModuleType, specs: Sequence[MenuItemSpec], on_action: Callable[[str], Any]
) -> tuple[Any, ...]:
    """pystray MenuItems for the specs; each click calls on_action(action id)."""

    def clicked(action: str) -> Callable[[Any, Any], None]:
        def handler(icon: Any, item: Any) -> None:
            on_action(action)

        return handler

    items: list[Any] = []
    for spec in specs:
        if spec.separator:
            items.append(pystray.Menu.SEPARATOR)
            continue
        items.append(
            pystray.MenuItem(
                spec.text,
                clicked(spec.action) if spec.action else None,
                checked=(lambda item, value=spec.checked: value) if spec.checked is not None else None,
                enabled=spec.enabled and spec.action is not None,
                default=spec.default,
            )
        )
    return tuple(items)


def template_icon_class(base: type) -> type:
    """A darwin Icon whose NSImage is a template, so macOS tints it for light and dark menu bars."""

    class TemplateIcon(base):  # type: ignore[misc, valid-type]
        def _assert_image(self) -> None:
            super()._assert_image()
            image = getattr(self, "_icon_image", None)
            if image is not None and not image.isTemplate():
                image.setTemplate_(True)
                self._status_item.button().setImage_(image)

    TemplateIcon.__name__ = TemplateIcon.__qualname__ = f"Template{base.__name__}"
    TemplateIcon.__module__ = base.__module__  # pystray derives its option prefix from the module
    return TemplateIcon


def clickable_xorg_icon_class(base: type) -> type:
    """An xorg Icon that hears clicks: pystray 0.19 creates its window without ButtonPressMask,
    so X never delivers the click its `_on_button_press` waits for (the default item never runs)."""

    class ClickableIcon(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            from Xlib import X

            self._window.change_attributes(
                event_mask=X.ExposureMask | X.StructureNotifyMask | X.ButtonPressMask
            )
            self._display.flush()

    ClickableIcon.__name__ = ClickableIcon.__qualname__ = f"Clickable{base.__name__}"
    ClickableIcon.__module__ = base.__module__  # other helpers recognise the backend by module
    return ClickableIcon


def icon_class(pystray: ModuleType, platform: str = sys.platform) -> type:
    """The pystray Icon class to use here."""
    module = pystray.Icon.__module__
    if platform == "darwin" and module.endswith("_darwin"):
        return template_icon_class(pystray.Icon)
    if module.endswith("_xorg"):
        return clickable_xorg_icon_class(pystray.Icon)
    return pystray.Icon


def prepare_image(icon_cls: type, image: Any) -> Any:
    """Adapt an RGBA icon to a backend: pystray's xorg backend drops alpha, so flatten it ourselves.

    (It pastes the image onto black without a mask: soft edges turn jagged and faded icons lose
    their fade. Compositing onto black first keeps what the other backends show.)
    """
    if not icon_cls.__module__.endswith("_xorg") or image.mode != "RGBA":
        return image
    from PIL import Image

    flat = Image.new("RGBA", image.size, (0, 0, 0, 255))
    flat.alpha_composite(image)
    return flat.convert("RGB")


def prepare_title(icon_cls: type, title: str) -> str:
    """Adapt a tooltip to a backend: the xorg backend stores it as a Latin-1 WM_NAME."""
    if not icon_cls.__module__.endswith("_xorg"):
        return title
    plain = title.replace("\u2014", "-").replace("\u2026", "...")
    return plain.encode("latin-1", "replace").decode("latin-1")


def flush(icon: Any) -> None:
    """Make sure X11 requests made for us by pystray's xorg loop thread reach the server.

    python-xlib lets a flush return early while another thread is sending; a request the loop
    thread queued at that moment (e.g. the WM_NAME of a title change) can then sit unsent until
    the next X event. Flushing again here, after pystray's call returned, sends it.
    """
    display = _xorg_display(icon)
    if display is not None:
        display.flush()


def _xorg_display(icon: Any) -> Any:
    """The python-xlib Display of a pystray xorg icon; None for every other backend."""
    return getattr(icon, "_display", None) if type(icon).__module__.endswith("_xorg") else None


@contextlib.contextmanager
def xlib_unstuck(icon: Any, every: float = 0.5) -> Iterator[None]:
    """While the block runs, flush the xorg icon's X connection from a helper thread every `every` s.

    pystray's xorg backend forwards an icon or title change from our thread to its loop thread over the
    same python-xlib Display, then blocks until the loop has run it. python-xlib's shared-connection
    I/O can lose a wake-up when the forwarding thread's flush meets the loop thread's own request (an
    Expose redraw's get_geometry): the loop then waits forever for a reply nobody reads, and we wait for
    the loop (seen here in CI and reproduced: py-spy showed exactly those two stacks). Any flush that
    completes wakes such a waiter, so a third thread keeps flushing until our call has returned.
    """
    display = _xorg_display(icon)
    if display is None:
        yield
        return
    done = threading.Event()

    def kick() -> None:
        while not done.wait(every):
            log.debug("an X call to pystray is still pending: flushing the connection")
            try:
                display.flush()
            except Exception:  # the display is gone (quitting): nothing left to unstick
                return

    helper = threading.Thread(target=kick, name="qwendesk-tray-xlib", daemon=True)
    helper.start()
    try:
        yield
    finally:
        done.set()


def hide_dock_icon(platform: str = sys.platform) -> None:
    """No Dock icon on macOS even when not packaged (a packaged app sets LSUIElement in Info.plist)."""
    if platform != "darwin":
        return
    try:
        import AppKit  # type: ignore[import-not-found]

        AppKit.NSApplication.sharedApplication().setActivationPolicy_(NSApplicationActivationPolicyAccessory)
    except Exception:  # cosmetic: never worth failing the tray for
        log.debug("could not hide the Dock icon", exc_info=True)


def ui_caller(platform: str = sys.platform) -> Callable[[Callable[[], None]], None]:
    """How to run a UI update from a background thread.

    AppKit must be touched on the main thread only, and pystray's darwin backend does not marshal
    update_menu() and icon changes itself; the GTK and AppIndicator backends already do (GLib idle),
    win32 and xorg forward to their own loop threads, so elsewhere a direct call is right.
    """
    if platform == "darwin":
        try:
            from PyObjCTools import AppHelper  # type: ignore[import-not-found]

            return AppHelper.callAfter
        except ImportError:
            pass
    return lambda fn: fn()


def wait_for_loop_thread(icon: Any, timeout: float = 2.0) -> None:
    """pystray's xorg backend records its loop thread only after signalling ready; wait for it.

    Without this, the first visible=True from the setup thread can race `_run` and fail with
    AttributeError('_thread').
    """
    if not type(icon).__module__.endswith("_xorg"):
        return
    import time

    deadline = time.monotonic() + timeout
    while not hasattr(icon, "_thread") and time.monotonic() < deadline:
        time.sleep(0.01)
