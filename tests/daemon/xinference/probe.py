"""Looking into a real Xinference from tests: what is registered and what runs (through its REST API)."""

from __future__ import annotations

from typing import Any

from qwendesk.daemon.xinference.client import XinferenceClient


async def registrations(client: XinferenceClient, model_type: str = "LLM") -> list[str]:
    """Names of the user-defined (not built-in) registrations of `model_type`."""
    resp = await client.request("GET", f"/v1/model_registrations/{model_type}", admin=True)
    return [item["model_name"] for item in resp.json() if not item.get("is_builtin")]


async def running(client: XinferenceClient) -> dict[str, dict[str, Any]]:
    """Running models by uid, as Xinference describes them."""
    resp = await client.request("GET", "/v1/models", admin=True)
    data = resp.json()
    return {item["id"]: item for item in (data.get("data", []) if isinstance(data, dict) else [])}
