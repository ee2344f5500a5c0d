"""Host, Origin and token guards, exercised through a real uvicorn server on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from qwendesk.daemon.config import load_settings
from qwendesk.daemon.security import SecurityMiddleware, allowed_hosts
from tests.conftest import free_port


def _serve(settings) -> Iterator[str]:
    app = FastAPI()
    app.add_middleware(SecurityMiddleware, settings=settings)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/api/thing")
    async def thing() -> dict:
        return {"ok": True}

    @app.post("/v1/chat/completions")
    async def chat() -> dict:
        return {"ok": True}

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{settings.port}"
    finally:
        server.should_exit = True
        thread.join(5)


@pytest.fixture
def open_server() -> Iterator[str]:
    yield from _serve(load_settings(flags={"port": free_port(), "allowed_origins": ["http://editor.test"]}))


@pytest.fixture
def token_server() -> Iterator[str]:
    yield from _serve(load_settings(flags={"port": free_port(), "token": "t0ken"}))


def test_loopback_hosts_pass(open_server: str) -> None:
    port = open_server.rsplit(":", 1)[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", f"[::1]:{port}"):
        r = httpx.get(open_server + "/api/thing", headers={"Host": host})
        assert r.status_code == 200, host


def test_dns_rebinding_host_is_refused(open_server: str) -> None:
    r = httpx.get(open_server + "/api/thing", headers={"Host": "evil.example"})
    assert r.status_code == 403
    assert "evil.example" in r.json()["error"]
    r = httpx.post(open_server + "/v1/chat/completions", headers={"Host": "evil.example:80"})
    assert r.status_code == 403
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_foreign_origin_is_refused_own_and_listed_pass(open_server: str) -> None:
    port = open_server.rsplit(":", 1)[1]
    assert (
        httpx.get(open_server + "/api/thing", headers={"Origin": "https://evil.example"}).status_code == 403
    )
    assert (
        httpx.get(open_server + "/api/thing", headers={"Origin": f"http://127.0.0.1:{port}"}).status_code
        == 200
    )
    r = httpx.get(open_server + "/api/thing", headers={"Origin": "http://editor.test"})
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == "http://editor.test"
    pre = httpx.options(open_server + "/v1/chat/completions", headers={"Origin": "http://editor.test"})
    assert pre.status_code == 204


def test_token_required_on_api_and_v1_not_health(token_server: str) -> None:
    assert httpx.get(token_server + "/health").status_code == 200
    r = httpx.get(token_server + "/api/thing")
    assert r.status_code == 401 and "token" in r.json()["error"]
    assert httpx.post(token_server + "/v1/chat/completions").status_code == 401
    assert (
        httpx.get(token_server + "/api/thing", headers={"Authorization": "Bearer wrong"}).status_code == 401
    )
    ok = httpx.get(token_server + "/api/thing", headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200


def test_allowed_hosts_include_configured_ones() -> None:
    s = load_settings(flags={"port": 1234, "allowed_hosts": ["my.box"]})
    hosts = allowed_hosts(s)
    assert {"my.box", "my.box:1234", "127.0.0.1:1234", "localhost"} <= hosts
    assert "evil.example" not in hosts
