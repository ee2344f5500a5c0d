"""The one HTTP client for qwendesk's daemon, used by the CLI and the tray (httpx and the error classes only)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
from httpx_sse import EventSource

from .errors import DaemonNotRunning, QwendeskError
from .schemas import ModelState

__all__ = ["DaemonClient", "ModelState"]  # the wire types a client's caller (the tray) compares with

START_HINT = "Start it with `qwendesk serve` (or `qwendesk tray`)."


class DaemonClient:
    """Talks to a running daemon; turns its `{"error", "code"}` bodies into the errors their codes name."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Any, timeout: float = 30.0) -> DaemonClient:
        """Client for the daemon that `settings` (a config.Settings) describes."""
        return cls(settings.url, settings.token, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        """Send one request and return its JSON body, or raise the matching QwendeskError."""
        try:
            extra = {"timeout": timeout} if timeout is not None else {}
            response = self._http.request(method, path, **kwargs, **extra)
        except httpx.ConnectError as exc:
            raise DaemonNotRunning(
                f"The qwendesk daemon is not running at {self.base_url}. {START_HINT}"
            ) from exc
        except httpx.TimeoutException as exc:
            raise DaemonNotRunning(
                f"The qwendesk daemon at {self.base_url} did not answer in time ({exc.__class__.__name__})."
            ) from exc
        return self._decode(response)

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text or response.reason_phrase}
        if response.is_success:
            return body
        message = body.get("error") if isinstance(body, dict) else None
        code = body.get("code") if isinstance(body, dict) else None
        if isinstance(message, dict):  # OpenAI's shape under /v1: {"error": {"message", "code"}}
            message, code = message.get("message"), message.get("code")
        text = str(message or f"HTTP {response.status_code} {response.reason_phrase}")
        raise QwendeskError.from_code(str(code or "internal_error"), text)

    # ---- the control API -----------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return self.request("GET", "/health", timeout=5)

    def is_running(self) -> bool:
        """True when a daemon answers /health."""
        try:
            self.health()
            return True
        except QwendeskError:
            return False

    def status(self) -> dict[str, Any]:
        return self.request("GET", "/api/status")

    def models(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/models")["models"]

    def model(self, name: str) -> dict[str, Any]:
        return self.request("GET", f"/api/models/{name}")

    def start(self, name: str, *, wait: bool = True, **options: Any) -> dict[str, Any]:
        """Start a model; options are n_ctx, n_gpu_layers, n_parallel. Waits until it runs unless wait=False."""
        body = {k: v for k, v in options.items() if v is not None}
        return self.request(
            "POST", f"/api/models/{name}/start", params={"wait": str(wait).lower()}, json=body, timeout=600
        )

    def stop(self, name: str) -> dict[str, Any]:
        return self.request("POST", f"/api/models/{name}/stop", timeout=120)

    def add(self, path: str) -> dict[str, Any]:
        """Copy a GGUF file into the models folder; returns the model it became."""
        return self.request("POST", "/api/models/add", json={"path": path}, timeout=3600)

    def config(self) -> dict[str, Any]:
        return self.request("GET", "/api/config")

    def shutdown(self) -> dict[str, Any]:
        """Stop the daemon, its Xinference and every model."""
        return self.request("POST", "/api/shutdown", timeout=60)

    # ---- document collections ------------------------------------------------------------------
    def collections(self) -> dict[str, Any]:
        """Every collection with its state, and the models document search uses."""
        return self.request("GET", "/api/collections", timeout=150)

    def add_collection(self, path: str, name: str | None = None) -> dict[str, Any]:
        """Index a folder as a collection (indexing goes on in the background)."""
        return self.request("POST", "/api/collections", json={"path": path, "name": name}, timeout=150)

    def remove_collection(self, name: str) -> dict[str, Any]:
        """Forget a collection's index (its files stay)."""
        return self.request("DELETE", f"/api/collections/{name}", timeout=150)

    def search_collection(self, name: str, query: str, k: int = 5) -> dict[str, Any]:
        return self.request(
            "POST", f"/api/collections/{name}/search", json={"query": query, "k": k}, timeout=150
        )

    def chat_stream(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST /v1/chat/completions streamed: yields each chunk until `[DONE]`; an error event raises."""
        try:
            with self._http.stream(
                "POST",
                "/v1/chat/completions",
                json={**body, "stream": True},
                timeout=httpx.Timeout(10, read=None),
            ) as response:
                if not response.is_success:
                    response.read()
                    self._decode(response)
                for sse in EventSource(response).iter_sse():
                    if sse.data == "[DONE]":
                        return
                    chunk = sse.json()
                    if isinstance(chunk, dict) and "error" in chunk:
                        error = (
                            chunk["error"]
                            if isinstance(chunk["error"], dict)
                            else {"message": chunk["error"]}
                        )
                        raise QwendeskError.from_code(
                            str(error.get("code") or "engine_error"), str(error.get("message"))
                        )
                    yield chunk
        except httpx.ConnectError as exc:
            raise DaemonNotRunning(
                f"The qwendesk daemon is not running at {self.base_url}. {START_HINT}"
            ) from exc

    def events(self, timeout: float | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event, data) from GET /api/events until the connection ends."""
        yield from self._stream("GET", "/api/events", timeout=timeout)

    def pull(self, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """Download a catalog model into the models folder: yields `progress`, then `done` or `error`."""
        yield from self._stream("POST", "/api/pull", json={"name": name})

    def _stream(
        self, method: str, path: str, timeout: float | None = None, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (event, data) pairs of a server-sent-events response."""
        try:
            with self._http.stream(
                method, path, timeout=httpx.Timeout(10, read=timeout), **kwargs
            ) as response:
                if not response.is_success:
                    response.read()
                    self._decode(response)
                for sse in EventSource(response).iter_sse():
                    yield sse.event, sse.json() if sse.data else {}
        except httpx.ConnectError as exc:
            raise DaemonNotRunning(
                f"The qwendesk daemon is not running at {self.base_url}. {START_HINT}"
            ) from exc
