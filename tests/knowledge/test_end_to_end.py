"""Through the secretary, as `make run` serves it: a wallet-authorisation request gets the matching documents."""

from __future__ import annotations

from support.client import get
from support.stack import start_stack, wait_ready

from .conftest import SAMPLES
from .test_search_quality import CODES, WALLET_AUTH


async def test_wallet_authorisation_request_is_answered_with_sources(database_url):
    stack = await start_stack(database_url, common={"knowledge_dir": str(SAMPLES)})
    try:
        await wait_ready(stack.url("analyst"))
        request = "Нужна статистика авторизаций кошельков за май: сколько отклонено и с какими кодами ответа"
        status, body, _ = await get(f"{stack.secretary}/analyze-request", {"channel": "tg", "username": "smirnovanton", "request": request})
        assert status == 200 and body["is_enough"] is True and body["action"] == "ответить сообщением"
        urls = [source["url"] for source in body["sources"]]
        assert urls[0] == WALLET_AUTH and CODES in urls
        titles = [source["title"] for source in body["sources"]]
        for n, title in enumerate(titles[:3], start=1):
            assert f"[{n}] {title}" in body["response"], "the answer names its sources by number"
        assert "Главное из [1]: Аналитический OLAP-куб WalletAuthorizations" in body["response"]

        status, conversation, _ = await get(f"{stack.secretary}/conversations/{body['conversation_id']}")
        assert status == 200
        assert [s["url"] for s in conversation["turns"][-1]["sources"]] == urls, "kept with the turn"
    finally:
        await stack.stop()
