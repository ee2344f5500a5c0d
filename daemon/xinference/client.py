"""Small async REST client for an Xinference supervisor (never imports xinference itself: the daemon stays small)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import httpx

from ..errors import (
    BadRequest,
    Conflict,
    Forbidden,
    ModelLoadError,
    NotFound,
    QwendeskError,
    SupervisorError,
    Unauthorized,
    describe_problems,
)

# The custom-model kinds qwendesk registers (Xinference's spelling).
MODEL_TYPES = ("LLM", "embedding", "rerank")
# Loading a model spawns a process that imports torch before llama.cpp even starts; be generous.
LAUNCH_TIMEOUT = 900.0
# Xinference's JWTs live 30 minutes; log in again a little before that.
TOKEN_MAX_AGE = 20 * 60.0
GENERIC_LAUNCH_FAILURE = "Failed to init server"

_ADDRESS_PREFIX = re.compile(r"^\s*\[address=[^\]]*\]\s*")
# Xinference answers with HTTP statuses and no error codes: this is where its statuses become our errors.
_STATUS_ERRORS: dict[int, type[QwendeskError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    422: BadRequest,
}


def clean_detail(body: Any) -> str:
    """The human part of an Xinference error body: `{"detail": "[address=…, pid=…] msg"}` -> `msg`."""
    if isinstance(body, (bytes, str)):
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        try:
            body = json.loads(text)
        except ValueError:
            return _ADDRESS_PREFIX.sub("", text.strip())[:500] or "no details"
    detail = body.get("detail", body.get("error", body)) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI validation errors: [{"loc": [...], "msg": "..."}]
        detail = describe_problems(detail)
    elif isinstance(detail, dict):
        detail = detail.get("message") or json.dumps(detail)
    text = _ADDRESS_PREFIX.sub("", str(detail).strip())
    return text or "no details"


def error_for(status: int, message: str, *, launch: bool = False) -> QwendeskError:
    """The QwendeskError subclass for an Xinference HTTP status (launch failures become ModelLoadError)."""
    if launch and status >= 500:
        return ModelLoadError(message)
    cls = _STATUS_ERRORS.get(status, SupervisorError)
    return cls(message)


class XinferenceClient:
    """Async client for the few Xinference endpoints the daemon needs.

    `api_key` (an `xf-…` key) authorizes inference and listing; Xinference only lets admin accounts
    register and launch models, so management calls log in with `credentials` (username, password)
    when given and use the resulting short-lived JWT.
    """

    def __init__(
        self,
        endpoint: str,
        api_key: str | None = None,
        *,
        credentials: tuple[str, str] | None = None,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.api_key = api_key
        self.credentials = credentials
        self._jwt: str | None = None
        self._jwt_at = 0.0
        self._http = httpx.AsyncClient(base_url=self.endpoint, timeout=timeout, transport=transport)

    # ---- auth ----------------------------------------------------------------------------------
    @property
    def headers(self) -> dict[str, str]:
        """Headers that authorize inference requests (the OpenAI proxy adds them when forwarding)."""
        token = self.api_key or self._jwt
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def fresh_headers(self) -> dict[str, str]:
        """Like `headers`, but first renews the login token when there is no API key."""
        if not self.api_key and self.credentials:
            await self._admin_token()
        return self.headers

    async def login(self) -> str:
        """Log in with `credentials` and return a fresh access token (JWT)."""
        if not self.credentials:
            raise Unauthorized("No Xinference credentials to log in with.")
        username, password = self.credentials
        resp = await self._send("POST", "/token", json={"username": username, "password": password})
        if resp.status_code != 200:
            raise Unauthorized(
                f"Xinference refused the login of '{username}': {clean_detail(resp.content)}. "
                "Check the Xinference credentials."
            )
        self._jwt, self._jwt_at = resp.json()["access_token"], time.monotonic()
        return self._jwt

    async def _admin_token(self) -> str | None:
        if not self.credentials:
            return None
        if self._jwt is None or time.monotonic() - self._jwt_at > TOKEN_MAX_AGE:
            await self.login()
        return self._jwt

    # ---- transport -----------------------------------------------------------------------------
    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise SupervisorError(
                f"Xinference at {self.endpoint} did not answer {method} {path} in time. "
                "It may be overloaded; try again."
            ) from exc
        except httpx.HTTPError as exc:
            raise SupervisorError(
                f"Cannot reach Xinference at {self.endpoint} ({type(exc).__name__}: {exc}). "
                "Is it running? `qwendesk status` shows the supervisor state."
            ) from exc

    async def request(
        self, method: str, path: str, *, admin: bool = False, launch: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send an authorized request; map an error answer to a QwendeskError."""
        for attempt in (1, 2):
            token = await self._admin_token() if admin else None
            token = token or self.api_key or self._jwt
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            resp = await self._send(method, path, headers=headers, **kwargs)
            if resp.status_code == 401 and admin and self.credentials and attempt == 1:
                self._jwt = None  # expired or the server restarted with new secrets: log in again
                continue
            break
        if resp.status_code >= 400:
            message = clean_detail(resp.content)
            if resp.status_code == 401:
                message = f"Xinference at {self.endpoint} rejected our credentials ({message})."
            elif resp.status_code == 403 and "API keys can only" in message:
                message = (
                    f"Xinference at {self.endpoint} lets API keys only list and query models ({message}). "
                    "Registering and starting models needs an admin account: set xinference_api_key to "
                    "'username:password'."
                )
            raise error_for(resp.status_code, message, launch=launch)
        return resp

    # ---- endpoints -----------------------------------------------------------------------------
    async def alive(self) -> bool:
        """True when the server answers `GET /status` (needs no auth)."""
        try:
            resp = await self._http.get("/status", timeout=5.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    async def check_authorized(self) -> None:
        """Raise unless an authorized `GET /v1/models` (and, with credentials, a login) succeeds."""
        await self.request("GET", "/v1/models", admin=True)

    async def register(self, model_type: str, spec: dict[str, Any], persist: bool = False) -> None:
        """Register a custom model of `model_type` (one of MODEL_TYPES); one of that name is replaced."""
        path = _registrations(model_type)
        body = {"model": json.dumps(spec), "persist": persist}
        try:
            await self.request("POST", path, admin=True, json=body)
        except BadRequest as exc:
            if "already registered" not in exc.message and "conflicts with" not in exc.message:
                raise
            await self.unregister(model_type, spec["model_name"])
            await self.request("POST", path, admin=True, json=body)

    async def unregister(self, model_type: str, name: str) -> None:
        """Remove a custom registration (unknown names are fine); model files are never touched."""
        await self.request("DELETE", f"{_registrations(model_type)}/{name}", admin=True)

    async def launch(
        self,
        model_name: str,
        uid: str,
        *,
        model_size: str | int | None,
        quantization: str,
        explain: Callable[[], str | None] | None = None,
        model_type: str = "LLM",
        **engine_kwargs: Any,
    ) -> str:
        """Launch a registered GGUF with llama.cpp and wait until it serves; returns the model uid.

        On failure Xinference only says "Failed to init server"; `explain()` (e.g. the supervisor's
        `explain_failure(offset)`) supplies the engine's real reason for the ModelLoadError.
        Embedding models have no size in their registration: pass `model_size=None`.
        """
        _registrations(model_type)  # validates the type
        body: dict[str, Any] = {
            "model_uid": uid,
            "model_name": model_name,
            "model_type": model_type,
            "model_engine": "llama.cpp",
            "model_format": "ggufv2",
            "quantization": quantization,
            **engine_kwargs,
        }
        if model_size is not None:
            body["model_size_in_billions"] = model_size
        try:
            resp = await self.request(
                "POST",
                "/v1/models",
                admin=True,
                launch=True,
                json=body,
                params={"wait_ready": "true"},  # a query parameter, not a body field
                timeout=LAUNCH_TIMEOUT,
            )
        except ModelLoadError as exc:
            raise ModelLoadError(launch_failure_message(model_name, exc.message, explain)) from exc
        return resp.json().get("model_uid", uid)

    async def terminate(self, uid: str) -> None:
        """Stop a running model; a uid that is not running is not an error."""
        try:
            await self.request("DELETE", f"/v1/models/{uid}", admin=True, timeout=120.0)
        except (NotFound, BadRequest) as exc:
            if "not found" not in exc.message.lower() and "not exist" not in exc.message.lower():
                raise

    async def aclose(self) -> None:
        await self._http.aclose()


def _registrations(model_type: str) -> str:
    """The registrations URL of one model type; anything else is a programming error."""
    if model_type not in MODEL_TYPES:
        raise ValueError(f"model_type must be one of {MODEL_TYPES}, not {model_type!r}")
    return f"/v1/model_registrations/{model_type}"


def launch_failure_message(
    model_name: str, server_message: str, explain: Callable[[], str | None] | None
) -> str:
    """One line saying why a launch failed: the engine's own cause when known, else the server's words."""
    cause = None
    if explain is not None:
        try:
            cause = explain()
        except Exception:  # explaining must never hide the failure itself
            cause = None
    if cause:
        return f"Model '{model_name}' failed to load: {cause}"
    if GENERIC_LAUNCH_FAILURE in server_message:
        return (
            f"Model '{model_name}' failed to load (Xinference: {server_message}). "
            "The engine's reason was not found in the supervisor log."
        )
    return f"Model '{model_name}' failed to load: {server_message}"
