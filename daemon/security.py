"""Request guards: Host allow-list (DNS rebinding), Origin allow-list (other web pages), bearer token."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import Settings
from .http_errors import error_body

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
# Paths any local caller may reach without the token: liveness and the chat page's static files.
OPEN_PATHS = ("/health",)
GUARDED_PREFIXES = ("/api", "/v1")


def is_loopback(host: str) -> bool:
    """Whether `host` (a name or an address the daemon listens on) is reachable only from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: Settings, port: int | None = None) -> set[str]:
    """Host header values we answer to: loopback names with and without our port (`port`, default the API's),
    plus configured ones."""
    names = {*LOOPBACK_NAMES, *settings.allowed_hosts}
    if settings.host not in ("0.0.0.0", "::", ""):
        names.add(settings.host if ":" not in settings.host else f"[{settings.host}]")
    port = settings.port if port is None else port
    return {n.lower() for n in names} | {f"{n}:{port}".lower() for n in names}


def allowed_origins(settings: Settings) -> set[str]:
    """Browser origins that may call the API: our own page, plus configured ones."""
    own = {f"http://{n}:{settings.port}" for n in LOOPBACK_NAMES}
    return own | {o.rstrip("/") for o in settings.allowed_origins}


class SecurityMiddleware:
    """Pure ASGI (so streamed responses pass through untouched) guard in front of every route.

    `port` is the port of the listener it guards (the Ollama-compatible one has its own), default the API's.
    """

    def __init__(self, app: ASGIApp, settings: Settings, port: int | None = None) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings, port)
        self.origins = allowed_origins(settings)
        self.own_origins = {f"http://{n}:{settings.port}" for n in LOOPBACK_NAMES}
        self.token = settings.token.encode() if settings.token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope.get("path", "")
        host = headers.get("host", "").lower()
        if host not in self.hosts:
            return await _deny(send, path, 403, f"Host '{host}' is not allowed (DNS-rebinding guard).")
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/") not in self.origins:
            return await _deny(send, path, 403, f"Origin '{origin}' may not use this API.")
        cors = origin is not None and origin.rstrip("/") not in self.own_origins
        if cors and scope.get("method") == "OPTIONS":
            return await _preflight(send, origin or "")
        guarded = self.token and path.startswith(GUARDED_PREFIXES) and path not in OPEN_PATHS
        if guarded and not self._authorized(headers, path):
            return await _deny(
                send, path, 401, "A valid token is required: send 'Authorization: Bearer <token>'."
            )
        if not cors:
            return await self.app(scope, receive, send)

        async def send_with_cors(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_cors_headers(origin or "")]
            await send(message)

        return await self.app(scope, receive, send_with_cors)

    def _authorized(self, headers: dict[str, str], path: str) -> bool:
        """The token as a bearer token, or on /v1 as Anthropic clients send it (`x-api-key`)."""
        assert self.token is not None
        scheme, _, value = headers.get("authorization", "").partition(" ")
        # Compared as bytes: compare_digest refuses non-ASCII str, and a header may carry any bytes.
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode("latin-1"), self.token):
            return True
        api_key = headers.get("x-api-key")
        return (
            api_key is not None
            and path.startswith("/v1")
            and hmac.compare_digest(api_key.strip().encode("latin-1"), self.token)
        )


def _cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"access-control-allow-origin", origin.encode("latin-1")),
        (b"vary", b"Origin"),
        (b"access-control-allow-headers", b"authorization, content-type, x-api-key, anthropic-version"),
        (b"access-control-allow-methods", b"GET, POST, DELETE, OPTIONS"),
    ]


async def _preflight(send: Send, origin: str) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": _cors_headers(origin)})
    await send({"type": "http.response.body", "body": b""})


async def _deny(send: Send, path: str, status: int, message: str) -> None:
    """Reject with the error shape the route family uses (OpenAI's for /v1)."""
    code = "unauthorized" if status == 401 else "forbidden"
    payload = json.dumps(error_body(path, message, code, status)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
