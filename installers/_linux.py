"""Linux: an XDG autostart entry for the tray and, where systemd --user works, a unit for the daemon."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .autostart import APP_ID, MARKER, AutostartStatus, Context, entry_env, remove_file, write_file

UNIT = f"{APP_ID}.service"
_DESKTOP_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_SYSTEMD_SAFE = re.compile(r"^[A-Za-z0-9_@%+=:,./-]+$")


# ---- pure generators ---------------------------------------------------------------------------


def desktop_quote(arg: str) -> str:
    """One Exec argument, quoted by the Desktop Entry spec's rules (before key-file escaping)."""
    if arg and not (set(arg) & _DESKTOP_RESERVED):
        return arg
    return '"' + re.sub(r'(["`$\\])', r"\\\1", arg) + '"'


def desktop_exec(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The Exec= value: `env NAME=value ... program args`, quoted, with % and key-file escapes."""
    words = (["env", *(f"{k}={v}" for k, v in env.items())] if env else []) + list(argv)
    line = " ".join(desktop_quote(w) for w in words).replace("%", "%%")
    return _keyfile_escape(line)


def _keyfile_escape(value: str) -> str:
    # Exec is a `string` key: backslashes and control characters are escaped once more.
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")


def desktop_entry(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The autostart .desktop file that starts the tray at login."""
    lines = [
        f"# {MARKER}",
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",
        "Name=qwendesk",
        "GenericName=AI Assistant",
        "Comment=Private AI assistant: local Qwen models in the system tray",
        f"Exec={desktop_exec(argv, env)}",
    ]
    if argv and argv[0].startswith("/"):
        # The session skips the entry if the program is gone (e.g. its venv was deleted).
        lines.append(f"TryExec={_keyfile_escape(argv[0])}")
    lines += ["Terminal=false", "Categories=Utility;", "X-GNOME-Autostart-enabled=true", ""]
    return "\n".join(lines)


def systemd_quote(arg: str, *, dollar: bool = True) -> str:
    """One word for a unit file: C-style quoting, `%` specifiers and (for Exec lines) `$` doubled."""
    if not _SYSTEMD_SAFE.match(arg):
        escaped = arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
        arg = f'"{escaped}"'
    arg = arg.replace("%", "%%")
    return arg.replace("$", "$$") if dollar else arg


def systemd_exec(argv: Sequence[str]) -> str:
    """An Exec line: systemd expands `$` in arguments only, and refuses quotes or `\\` in the program."""
    program, *args = argv
    if set(program) & set("\"'\\") or not program.isprintable():
        args, program = [program, *args], "/usr/bin/env"  # env runs the path as given
    return " ".join([systemd_quote(program, dollar=False), *(systemd_quote(a) for a in args)])


def systemd_unit(argv: Sequence[str], env: Mapping[str, str], description: str) -> str:
    """The user unit that runs the daemon and restarts it when it crashes."""
    lines = [
        f"# {MARKER}",
        "[Unit]",
        f"Description={description}",
        # Give up after 5 failed starts in 2 minutes instead of looping forever (e.g. port taken).
        "StartLimitIntervalSec=120",
        "StartLimitBurst=5",
        "",
        "[Service]",
        "Type=simple",
        f"ExecStart={systemd_exec(argv)}",
    ]
    lines += [f"Environment={systemd_quote(f'{k}={v}', dollar=False)}" for k, v in env.items()]
    lines += [
        "Restart=on-failure",
        "RestartSec=5",
        # SIGTERM to the daemon only, so it stops Xinference and its models itself; leftovers get SIGKILL.
        "KillMode=mixed",
        "TimeoutStopSec=60",
        "",
        "[Install]",
        "WantedBy=default.target",
        "",
    ]
    return "\n".join(lines)


# ---- the implementation ----------------------------------------------------------------------


class XdgAutostart:
    """~/.config/autostart/qwendesk.desktop (tray) + ~/.config/systemd/user/qwendesk.service (daemon)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.desktop_path = ctx.config_home / "autostart" / f"{APP_ID}.desktop"
        self.unit_path = ctx.config_home / "systemd" / "user" / UNIT
        self.wants_link = self.unit_path.parent / "default.target.wants" / UNIT

    # ---- what enable writes
    def desktop_text(self) -> str:
        return desktop_entry(self.ctx.command("tray"), entry_env(self.ctx.settings))

    def unit_text(self) -> str:
        description = f"qwendesk daemon (OpenAI-compatible API on {self.ctx.settings.url})"
        return systemd_unit(self.ctx.command("serve"), entry_env(self.ctx.settings), description)

    # ---- systemd
    def _systemctl(self, *args: str) -> tuple[int, str]:
        result = self.ctx.runner(["systemctl", "--user", *args])
        return result.returncode, (result.stdout or result.stderr or "").strip()

    def systemd_available(self) -> bool:
        """True when a systemd user manager answers (not in most containers or WSL without systemd)."""
        return self._systemctl("show-environment")[0] == 0

    # ---- the interface
    def enable(self, *, now: bool = False) -> AutostartStatus:
        notes = []
        write_file(self.desktop_path, self.desktop_text().encode())
        if self.systemd_available():
            changed = write_file(self.unit_path, self.unit_text().encode())
            if changed:
                self._systemctl("daemon-reload")
            rc, out = self._systemctl("enable", *(["--now"] if now else []), UNIT)
            if rc != 0:
                notes.append(f"`systemctl --user enable {UNIT}` failed: {out}")
            elif now and changed:
                self._systemctl("try-restart", UNIT)  # a running daemon picks up the new command
        if now:
            notes.append(self._start_tray())
        return self.status(notes)

    def _start_tray(self) -> str:
        env = self.ctx.env
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
            return "No graphical session here, so the tray was not started; `qwendesk serve` runs the daemon."
        self.ctx.spawner(self.ctx.command("tray"), entry_env(self.ctx.settings))
        return "Started the tray."

    def disable(self, *, now: bool = False) -> AutostartStatus:
        notes = []
        if self.unit_path.exists() or self.wants_link.is_symlink():
            if _ours(self.unit_path) and self.systemd_available():
                rc, out = self._systemctl("disable", *(["--now"] if now else []), UNIT)
                if rc != 0:
                    notes.append(f"`systemctl --user disable {UNIT}` said: {out}")
            if self.wants_link.is_symlink() and self.wants_link.resolve() == self.unit_path.resolve():
                remove_file(self.wants_link)  # systemd was unreachable: undo its enable by hand
            notes.append(self._remove(self.unit_path))
            if self.systemd_available():
                self._systemctl("daemon-reload")
        notes.append(self._remove(self.desktop_path))
        if now:
            notes.append("A tray that is running keeps running until you quit it.")
        return self.status(notes)

    def _remove(self, path: Path) -> str:
        if path.exists() and not _ours(path):
            return f"Left {path} alone: qwendesk did not write it."
        remove_file(path)
        return ""

    def status(self, notes: Sequence[str] = ()) -> AutostartStatus:
        desktop = self.desktop_path.is_file() and _ours(self.desktop_path)
        unit = self.unit_path.is_file() and _ours(self.unit_path)
        paths = [str(p) for p in (self.desktop_path, self.unit_path, self.wants_link) if p.exists()]
        stale = (desktop and self.desktop_path.read_text() != self.desktop_text()) or (
            unit and self.unit_path.read_text() != self.unit_text()
        )
        detail = [
            f"Tray login entry: {self.desktop_path}" if desktop else "No tray login entry.",
        ]
        if desktop and _turned_off(self.desktop_path.read_text()):
            detail.append("It is turned off in the desktop's startup settings.")
        loaded: bool | None = None
        managed = False
        if unit:
            if self.systemd_available():
                enabled = self._systemctl("is-enabled", UNIT)[1]
                active = self._systemctl("is-active", UNIT)[1]
                loaded, managed = active == "active", enabled == "enabled"
                detail.append(f"Daemon unit {self.unit_path}: {enabled}, {active}.")
            else:
                detail.append(f"Daemon unit {self.unit_path} exists, but systemd --user is not reachable.")
        elif self.systemd_available():
            detail.append("No systemd unit for the daemon; the tray starts it.")
        else:
            detail.append("systemd --user is not available here; the tray starts the daemon itself.")
        if stale:
            detail.append("An entry runs a different command than this installation; run enable again.")
        detail += [n for n in notes if n]
        return AutostartStatus(desktop, loaded, tuple(paths), " ".join(detail), managed, bool(stale))


def _ours(path: Path) -> bool:
    try:
        return MARKER in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def _turned_off(text: str) -> bool:
    lines = {line.strip().replace(" ", "") for line in text.splitlines()}
    return "Hidden=true" in lines or "X-GNOME-Autostart-enabled=false" in lines
