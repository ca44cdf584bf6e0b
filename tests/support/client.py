"""Small HTTP helpers for tests that talk to the running services."""

from __future__ import annotations

from typing import Any

import aiohttp


async def get(url: str, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.get(url, params=params, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def post(url: str, json: Any = None, data: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session, session.post(url, json=json, data=data, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


def is_error_response(body: Any, status: int) -> bool:
    return isinstance(body, dict) and set(body) == {"error", "message", "statusCode"} and body["statusCode"] == status
