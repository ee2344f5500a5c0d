"""A minimal freedesktop system tray for a bare Xvfb: owns _NET_SYSTEM_TRAY_S<n>, docks icons in a row.

Run as a script with DISPLAY set; prints "ready <window id>" and then "docked <icon window id>" lines.
A bare X server has no tray, and pystray's xorg backend never maps its window without one.
"""

from __future__ import annotations

import sys

from Xlib import X, display
from Xlib.protocol import event

SYSTEM_TRAY_REQUEST_DOCK = 0
BACKGROUND = 0x3C3C3C  # a mid-dark panel grey


def main(icon_size: int = 48, slots: int = 4) -> None:
    d = display.Display()
    screen = d.screen()
    tray = screen.root.create_window(
        0,
        0,
        icon_size * slots,
        icon_size,
        0,
        screen.root_depth,
        background_pixel=BACKGROUND,
        event_mask=X.StructureNotifyMask,
    )
    tray.set_wm_name("xembed-test-tray")
    tray.map()
    selection = d.intern_atom(f"_NET_SYSTEM_TRAY_S{d.get_default_screen()}")
    opcode = d.intern_atom("_NET_SYSTEM_TRAY_OPCODE")
    tray.set_selection_owner(selection, X.CurrentTime)
    announce = event.ClientMessage(
        window=screen.root,
        client_type=d.intern_atom("MANAGER"),
        data=(32, [X.CurrentTime, selection, tray.id, 0, 0]),
    )
    screen.root.send_event(announce, event_mask=X.StructureNotifyMask)
    d.flush()
    print("ready", tray.id, flush=True)
    docked: dict[int, int] = {}
    while True:
        e = d.next_event()
        if e.type != X.ClientMessage or e.client_type != opcode:
            continue
        _, data = e.data
        if data[1] != SYSTEM_TRAY_REQUEST_DOCK:
            continue
        window = d.create_resource_object("window", data[2])
        slot = docked.setdefault(window.id, len(docked))
        window.reparent(tray, slot * icon_size, 0)
        window.configure(width=icon_size, height=icon_size)
        window.map()
        d.flush()
        print("docked", window.id, flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 48)
