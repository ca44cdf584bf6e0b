"""The knowledge base's admin API: list, add, read, search, delete; behind the service token."""

from __future__ import annotations

import aiohttp
from pydantic import SecretStr

from support.client import get, is_error_response, post

TOKEN = {"X-Service-Token": "kb-admin-token"}
DOC = {
    "url": "https://wiki.example.internal/display/TREASURY/Liquidity",
    "title": "Казначейство: позиция ликвидности",
    "text": "Позиция ликвидности на конец дня по всем счетам.\n\nОтчёт: https://bi.example.internal/reports/liquidity",
    "tags": ["казначейство", "treasury", "ликвидность"],
}


async def delete(url: str, headers: dict) -> tuple[int, dict | None]:
    async with aiohttp.ClientSession() as session, session.delete(url, headers=headers) as response:
        return response.status, (await response.json(content_type=None) if response.status != 204 else None)


async def test_add_list_search_replace_and_delete(database_url, start_analyst):
    analyst = await start_analyst(database_url=database_url, service_token=SecretStr("kb-admin-token"))
    documents = f"{analyst.url}/knowledge/documents"

    status, body, _ = await get(documents)
    assert status == 401 and is_error_response(body, 401), "admin routes need the service token"
    status, body, _ = await post(documents, DOC)
    assert status == 401

    status, added, _ = await post(documents, DOC, headers=TOKEN)
    assert status == 201 and added["url"] == DOC["url"] and added["origin"] == "api" and added["path"] is None
    status, page, _ = await get(documents, headers=TOKEN)
    assert status == 200 and page["total"] == 1 and page["items"][0]["id"] == added["id"]

    status, found, _ = await get(f"{analyst.url}/knowledge/search", {"q": "ликвидность на конец дня"}, headers=TOKEN)
    assert status == 200 and found["items"][0]["url"] == DOC["url"] and found["items"][0]["score"] > 0
    status, answer, _ = await post(f"{analyst.url}/prepare-analititcs", {"context": "Казначейство", "request": "позиция ликвидности"}, headers=TOKEN)
    assert status == 200 and answer["sources"][0]["url"] == DOC["url"], "the analyst uses it at once"

    status, replaced, _ = await post(documents, {**DOC, "text": "Платёжный календарь на неделю."}, headers=TOKEN)
    assert status == 200 and replaced["id"] == added["id"], "the same URL replaces the document"
    status, full, _ = await get(f"{documents}/{added['id']}", headers=TOKEN)
    assert status == 200 and full["body"] == "Платёжный календарь на неделю." and full["links"] == []
    status, found, _ = await get(f"{analyst.url}/knowledge/search", {"q": "платежный календарь"}, headers=TOKEN)
    assert found["items"][0]["url"] == DOC["url"]

    status, _ = await delete(f"{documents}/{added['id']}", TOKEN)
    assert status == 204
    status, body, _ = await get(f"{documents}/{added['id']}", headers=TOKEN)
    assert status == 404 and is_error_response(body, 404)
    status, body = await delete(f"{documents}/{added['id']}", TOKEN)
    assert status == 404 and is_error_response(body, 404)
    status, found, _ = await get(f"{analyst.url}/knowledge/search", {"q": "платежный календарь"}, headers=TOKEN)
    assert found["items"] == []


async def test_bad_input_gets_a_clear_400(database_url, start_analyst):
    analyst = await start_analyst(database_url=database_url)
    documents = f"{analyst.url}/knowledge/documents"
    for bad in (
        {**DOC, "url": "wiki/page"}, {**DOC, "title": ""}, {**DOC, "text": "   "}, {"url": DOC["url"]}, {**DOC, "tags": "x"},
        {**DOC, "tags": ["nul\u0000"]}, {**DOC, "url": DOC["url"] + "/" + "я" * 1100}, {**DOC, "text": "word " * 110_000},
    ):
        status, body, _ = await post(documents, bad)
        assert status == 400 and is_error_response(body, 400), (bad, body)
    status, body, _ = await get(documents, {"limit": 0})
    assert status == 400 and "limit" in body["message"]
    status, body, _ = await get(f"{documents}/not-a-number")
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await get(f"{analyst.url}/knowledge/search", {"q": " "})
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await get(f"{analyst.url}/knowledge/search", {"q": "кошелек\u0000"})
    assert status == 200 and body == {"items": []}
    status, body, _ = await get(f"{analyst.url}/knowledge/search")
    assert status == 400 and "'q' is required" in body["message"]
