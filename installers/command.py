"""`qwendesk autostart enable|disable|status`: start qwendesk at login."""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict
from typing import Any

from . import autostart

HELP = "Start qwendesk at login: enable, disable, or show the status of the login entries."


def register(subparsers: Any) -> None:
    """Add the `autostart` command to the CLI (entry point group `qwendesk.commands`)."""
    parser = subparsers.add_parser("autostart", help=HELP, description=HELP)
    actions = parser.add_subparsers(dest="autostart_action", metavar="{enable,disable,status}")
    actions.required = True
    enable = actions.add_parser("enable", help="Start the tray (and the daemon) at every login.")
    enable.add_argument("--now", action="store_true", help="Also start them right away.")
    disable = actions.add_parser("disable", help="Remove exactly what enable wrote.")
    disable.add_argument(
        "--now", action="store_true", help="Also stop what the service manager runs (launchd, systemd)."
    )
    status = actions.add_parser("status", help="Show the login entries; exit code 1 when not enabled.")
    status.add_argument("--json", action="store_true", help="Print the status as JSON.")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Any) -> int:
    """Run one autostart action and print what is in place afterwards."""
    action = args.autostart_action
    if action == "enable":
        result = autostart.enable(settings, now=args.now)
    elif action == "disable":
        result = autostart.disable(settings, now=args.now)
    else:
        result = autostart.status(settings)
        if args.json:
            print(json.dumps(asdict(result), indent=2))
            return 0 if result.installed else 1
    print(render(result))
    if action == "enable" and _uncarried_settings():
        print(
            f"Note: only QWENDESK_HOME is carried into the login entry; put other settings in "
            f"{settings.config_file}."
        )
    return 0 if action != "status" or result.installed else 1


def render(status: autostart.AutostartStatus) -> str:
    """Human-readable status."""
    state = "on" if status.installed else "off"
    loaded = {True: "yes", False: "no", None: "unknown (this platform cannot tell)"}[status.loaded]
    lines = [f"Start at login: {state}", f"Loaded now: {loaded}"]
    lines += [f"  {path}" for path in status.paths]
    if status.detail:
        lines.append(status.detail)
    return "\n".join(lines)


def _uncarried_settings() -> list[str]:
    return [k for k in os.environ if k.startswith("QWENDESK_") and k not in ("QWENDESK_HOME",)]
