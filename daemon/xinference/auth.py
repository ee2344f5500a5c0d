"""Locks the embedded Xinference down: an admin account and an API key only the daemon knows.

Xinference 4.x turns auth on by default and waits for a first-run setup whose token it stores in
`$XINFERENCE_HOME/auth/auth.db`. We do that setup ourselves, keep the credentials in
`run_dir/xinference-auth.json` (mode 0600) and reuse them on later starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import SupervisorError, Unauthorized
from .client import XinferenceClient, clean_detail

ADMIN_USER = "qwendesk"
KEY_NAME = "qwendesk-daemon"
CREDENTIALS_FILE = "xinference-auth.json"


@dataclass
class Credentials:
    username: str
    password: str
    api_key: str | None = None


def load_credentials(path: Path) -> Credentials | None:
    try:
        data = json.loads(path.read_text())
        return Credentials(data["username"], data["password"], data.get("api_key"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_credentials(path: Path, creds: Credentials) -> None:
    """Write the secrets readable by the owner only (created 0600, never world-readable in between)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(asdict(creds), fh)
    os.replace(tmp, path)


def read_setup_token(xinference_home: Path) -> str | None:
    """The pending first-run setup token, or None once an account exists."""
    db = xinference_home / "auth" / "auth.db"
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute("SELECT value FROM system_config WHERE key = 'setup_token'").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


async def _create_api_key(client: XinferenceClient) -> str:
    name = f"{KEY_NAME}-{secrets.token_hex(4)}"  # key names are unique per user
    resp = await client.request("POST", "/v1/admin/keys", admin=True, json={"name": name})
    return resp.json()["key"]


async def _setup_admin(client: XinferenceClient, xinference_home: Path) -> Credentials:
    """First run: claim the admin account with the setup token Xinference left in its database."""
    token = None
    for _ in range(50):  # the API process writes it while starting; usually there already
        token = read_setup_token(xinference_home)
        if token:
            break
        await asyncio.sleep(0.2)
    if not token:
        raise SupervisorError(
            f"Xinference in {xinference_home} already has an admin account that qwendesk does not know "
            f"(the credentials file is missing). Stop qwendesk and delete {xinference_home / 'auth'} "
            "to let it set up a fresh one (this resets Xinference's users and API keys only)."
        )
    creds = Credentials(ADMIN_USER, secrets.token_urlsafe(24))
    resp = await client._send(
        "POST",
        "/v1/admin/setup",
        json={"setup_token": token, "username": creds.username, "password": creds.password},
    )
    if resp.status_code != 201:
        raise SupervisorError(f"Xinference's first-run setup failed: {clean_detail(resp.content)}")
    return creds


async def ensure_auth(endpoint: str, xinference_home: Path, path: Path) -> XinferenceClient:
    """A client holding working admin credentials and API key; sets them up or repairs them as needed."""
    creds = load_credentials(path)
    client = XinferenceClient(endpoint)
    try:
        if creds is not None:
            client.credentials = (creds.username, creds.password)
            try:
                await client.login()
            except Unauthorized:
                creds = None  # Xinference's auth database was reset: set up again below
        if creds is None:
            creds = await _setup_admin(client, xinference_home)
            client.credentials = (creds.username, creds.password)
            await client.login()
        if creds.api_key and not await _key_works(client, creds.api_key):
            creds.api_key = None
        if not creds.api_key:
            creds.api_key = await _create_api_key(client)
        save_credentials(path, creds)
        client.api_key = creds.api_key
        return client
    except BaseException:
        await client.aclose()
        raise


async def _key_works(client: XinferenceClient, key: str) -> bool:
    resp = await client._send("GET", "/v1/models", headers={"Authorization": f"Bearer {key}"})
    return resp.status_code == 200
