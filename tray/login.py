"""The "Start at Login" item's link to qwendesk.installers.autostart (tolerant of it being absent)."""

from __future__ import annotations

import importlib
import logging
from types import ModuleType
from typing import Any

from qwendesk.daemon.errors import QwendeskError

log = logging.getLogger(__name__)


def _load() -> ModuleType | None:
    try:
        return importlib.import_module("qwendesk.installers.autostart")
    except ImportError:
        return None


class LoginItem:
    """enable / disable / is_enabled over installers.autostart; None from is_enabled means unavailable."""

    def __init__(self, settings: Any, module: ModuleType | Any | None = None) -> None:
        self.settings = settings
        self._module = module if module is not None else _load()

    @property
    def available(self) -> bool:
        return self._module is not None

    def _status(self) -> Any:
        if self._module is None:
            return None
        try:
            return self._module.status(self.settings)
        except QwendeskError:
            raise
        except Exception:  # a broken platform probe must not take the tray down with it
            log.warning("could not read the login-item status", exc_info=True)
            return None

    def is_enabled(self) -> bool | None:
        """True/False when the platform can tell, None when auto-start is unavailable here."""
        status = self._status()
        if status is None:
            return None
        return bool(getattr(status, "installed", status))

    def daemon_managed(self) -> bool:
        """True when a service manager (systemd) runs the daemon, so the tray must not spawn one."""
        status = self._status()
        return bool(getattr(status, "daemon_managed", False))

    def set_enabled(self, enabled: bool) -> bool:
        """Write or remove the login entries; returns the new state. `now` stays off: we are the tray."""
        if self._module is None:
            raise QwendeskError("Start at Login is not available in this installation.")
        status = (self._module.enable if enabled else self._module.disable)(self.settings)
        return bool(getattr(status, "installed", enabled))
