"""Xinference: the supervisor models are registered with and launched by, embedded or remote."""

from __future__ import annotations

from ..config import Settings
from .base import Supervisor
from .embedded import EmbeddedSupervisor
from .remote import RemoteXinference

__all__ = ["EmbeddedSupervisor", "RemoteXinference", "Supervisor", "make_supervisor"]


def make_supervisor(settings: Settings) -> Supervisor:
    """The remote Xinference when `xinference_endpoint` is set, else the embedded one."""
    if settings.xinference_endpoint:
        return RemoteXinference(settings)
    return EmbeddedSupervisor(settings)
