"""A remote Xinference (e.g. a cluster) at `xinference_endpoint`: connected to, never started or stopped."""

from __future__ import annotations

from ..config import Settings
from ..errors import QwendeskError, SupervisorError
from ..schemas import SupervisorView
from .base import Supervisor
from .client import XinferenceClient


def parse_remote_key(value: str | None) -> tuple[str | None, tuple[str, str] | None]:
    """`xinference_api_key` is an API key (`xf-…`) or `username:password` of an admin account."""
    if not value:
        return None, None
    if ":" in value and not value.startswith(("xf-", "sk-")):
        user, _, password = value.partition(":")
        return None, (user, password)
    return value, None


class RemoteXinference(Supervisor):
    """An existing Xinference (e.g. a cluster) at `settings.xinference_endpoint`; we never start or stop it."""

    mode = "remote"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.endpoint = (settings.xinference_endpoint or "").rstrip("/")

    async def start(self) -> XinferenceClient:
        async with self._lock:
            if self.client is not None:
                return self.client
            api_key, credentials = parse_remote_key(self.settings.xinference_api_key)
            client = XinferenceClient(self.endpoint, api_key, credentials=credentials)
            try:
                if not await client.alive():
                    raise SupervisorError(
                        f"No Xinference answers at {self.endpoint} (xinference_endpoint). Start it, or "
                        "unset xinference_endpoint to let qwendesk run its own."
                    )
                await client.check_authorized()
            except QwendeskError as exc:
                await client.aclose()
                await self._set_state("failed", exc.message)
                raise
            self.client = client
            await self._set_state("remote")
            return client

    async def stop(self) -> None:
        async with self._lock:
            if self.client is not None:
                await self.client.aclose()
                self.client = None
            await self._set_state("stopped")

    def explain_failure(self, since: int) -> str | None:
        return (
            f"the engine's reason is only in the log of the remote Xinference at {self.endpoint} "
            "(no local log in remote mode); look there"
        )

    def view(self) -> SupervisorView:
        view = super().view()
        if self.state == "stopped":
            view.state = "remote"
        return view
