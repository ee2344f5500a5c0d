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
from qwendesk.daemon.security import SecurityMiddleware, allowed_hosts, is_loopback
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


def test_a_non_ascii_token_is_refused_not_a_crash(token_server: str) -> None:
    for value in ("Bearer tökén", "Bearer t0ken\u00e9", "Bearer \u6c49\u5b57"):
        r = httpx.get(token_server + "/api/thing", headers={"Authorization": value.encode("utf-8")})
        assert r.status_code == 401, (value, r.text)
    ok = httpx.get(token_server + "/api/thing", headers={"Authorization": "Bearer t0ken"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.0.1", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("", False), ("192.168.1.5", False), ("my-laptop.local", False)],
)  # fmt: skip
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_listening_beyond_loopback_needs_a_token(tmp_path) -> None:
    """`qwendesk serve --host 0.0.0.0` without a token says why and exits non-zero, before binding anything."""
    import subprocess
    import sys

    env = {"QWENDESK_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "qwendesk.daemon", "serve", "--host", "0.0.0.0", "--port", str(free_port())]
    out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Set a token" in out.stderr, out.stderr
    assert not (tmp_path / "logs" / "daemon.log").exists()  # refused before anything started


async def test_the_api_schema_is_served_but_no_page_that_loads_third_party_script() -> None:
    from qwendesk.daemon.app import create_app

    app = create_app(load_settings(env={}), manager=None)  # type: ignore[arg-type]  (no route here needs it)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:11470") as client:
        assert (await client.get("/api/docs")).status_code == 404
        assert (await client.get("/redoc")).status_code == 404
        schema = await client.get("/api/openapi.json")
        assert schema.status_code == 200 and "/v1/chat/completions" in schema.json()["paths"]
