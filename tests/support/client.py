"""Small HTTP helpers for tests that talk to the running services."""

from __future__ import annotations

from typing import Any

import aiohttp

# The service token of every service the suite starts (tests/conftest.py puts it in the environment).
SUITE_TOKEN = "suite-service-token"
AS_A_SERVICE = {"X-Service-Token": SUITE_TOKEN}


async def get(url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    """GET as a peer service would (with the suite's token) unless `headers` says otherwise."""
    headers = AS_A_SERVICE if headers is None else headers
    async with aiohttp.ClientSession() as session, session.get(url, params=params, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def post(url: str, json: Any = None, data: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    """POST as a peer service would (with the suite's token) unless `headers` says otherwise."""
    headers = AS_A_SERVICE if headers is None else headers
    async with aiohttp.ClientSession() as session, session.post(url, json=json, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def put(url: str, json: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    """PUT as a peer service would (with the suite's token) unless `headers` says otherwise."""
    headers = AS_A_SERVICE if headers is None else headers
    async with aiohttp.ClientSession() as session, session.put(url, json=json, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


def is_error_response(body: Any, status: int) -> bool:
    return isinstance(body, dict) and set(body) == {"error", "message", "statusCode"} and body["statusCode"] == status
