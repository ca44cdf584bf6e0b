"""What the analyst's model gets (numbered sources) and what reaches the user (only links the base holds).

The model is a local server speaking the OpenAI wire format, driven by the service's own client.
"""

from __future__ import annotations

import json

from multyworkemon_common.links import REMOVED_MARK
from support.client import get, post
from support.openai_wire import Reply

from .conftest import SAMPLES
from .test_search_quality import ACCESS, CODES, WALLET_AUTH

WALLET_REQUEST = {
    "context": "Аналитик хочет получить срез авторизаций кошельков за май по кодам ответа.",
    "request": "Нужна статистика авторизаций кошельков за май: сколько отклонено и с какими кодами ответа",
    "channel": "tg",
}


def llm(openai_server, **settings) -> dict:
    return {"llm_provider": "openai", "llm_base_url": openai_server.base_url, "llm_api_key": "sk-placeholder",
            "llm_max_retries": 0, **settings}


def model_payload(openai_server, index: int = -1) -> dict:
    content = openai_server.requests[index]["body"]["messages"][-1]["content"]
    return json.loads(content.split("\n", 1)[1])


async def test_the_model_gets_numbered_sources_and_foreign_links_are_removed(database_url, openai_server, start_analyst):
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(SAMPLES), **llm(openai_server))
    answer = (
        "Откройте куб авторизаций кошельков [1]: " + WALLET_AUTH + " и отчёт https://bi.example.internal/reports/wallet-auth-daily. "
        "Коды ответа — в справочнике [2] (" + CODES + "/). "
        "Ещё можно посмотреть https://evil.example.com/steal?token=1, [внешний дашборд](https://grafana.example.org/d/x) "
        "и www.random-blog.example/auth."
    )
    openai_server.push(Reply(text=json.dumps({"is_enough": True, "response": answer, "action": "ответить сообщением"}, ensure_ascii=False)))
    status, body, _ = await post(f"{analyst.url}/prepare-analititcs", WALLET_REQUEST)
    assert status == 200, body

    sources = model_payload(openai_server)["sources"]
    assert [s["n"] for s in sources] == list(range(1, len(sources) + 1))
    assert sources[0]["url"] == WALLET_AUTH and CODES in {s["url"] for s in sources}
    assert set(sources[0]) == {"n", "title", "url", "excerpt"} and "WalletAuthorizations" in sources[0]["excerpt"]
    assert [s["url"] for s in body["sources"]] == [s["url"] for s in sources], "sources[n - 1] is [n] in the text"
    assert all(set(s) == {"title", "url", "score"} and s["score"] > 0 for s in body["sources"])

    response = body["response"]
    assert WALLET_AUTH in response, "a source's own URL stays"
    assert "https://bi.example.internal/reports/wallet-auth-daily" in response, "a link a document gives stays"
    assert CODES + "/" in response, "the same URL with a trailing slash is the same link"
    for foreign in ("evil.example.com", "grafana.example.org", "random-blog.example"):
        assert foreign not in response
    assert response.count(REMOVED_MARK) == 3
    assert "[внешний дашборд]" not in response and "внешний дашборд" in response, "a Markdown link keeps its words"
    assert body["is_enough"] is True and body["action"] == "ответить сообщением"


async def test_a_link_from_the_base_but_not_among_the_sources_stays(database_url, openai_server, start_analyst):
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(SAMPLES), **llm(openai_server))
    answer = f"Сначала оформите доступ: {ACCESS}"
    openai_server.push(Reply(text=json.dumps({"is_enough": True, "response": answer, "action": "ответить сообщением"}, ensure_ascii=False)))
    status, body, _ = await post(f"{analyst.url}/prepare-analititcs", {"context": "чарджбэки", "request": "диспуты по картам"})
    assert status == 200 and ACCESS not in {s["url"] for s in body["sources"]}
    assert body["response"] == answer


async def test_nothing_relevant_gives_the_model_no_sources_and_no_link_survives(database_url, openai_server, start_analyst):
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(SAMPLES), **llm(openai_server))
    made_up = "Прогноз погоды смотрите на https://weather.example.com/moscow"
    openai_server.push(Reply(text=json.dumps({"is_enough": True, "response": made_up, "action": "ответить сообщением"}, ensure_ascii=False)))
    status, body, _ = await get(f"{analyst.url}/prepare-analititcs", {"context": "Погода", "request": "погода в Москве завтра"})
    assert status == 200 and body["sources"] == []
    assert model_payload(openai_server)["sources"] == []
    assert body["response"] == f"Прогноз погоды смотрите на {REMOVED_MARK}"


async def test_the_offline_model_cites_the_sources_and_says_when_there_are_none(database_url, start_analyst):
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(SAMPLES), llm_provider="offline")
    status, body, _ = await post(f"{analyst.url}/prepare-analititcs", WALLET_REQUEST)
    assert status == 200 and body["is_enough"] is True
    assert body["sources"][0]["url"] == WALLET_AUTH
    assert "[1] Куб авторизаций кошельков" in body["response"] and "Главное из [1]: Аналитический OLAP-куб" in body["response"]
    assert body["response"].rstrip().endswith((".", "…")), "the quoted excerpt ends on a whole sentence"


async def test_the_offline_model_says_when_the_base_has_nothing(database_url, start_analyst):
    analyst = await start_analyst(database_url=database_url, llm_provider="offline")  # an empty base
    status, body, _ = await get(f"{analyst.url}/prepare-analytics", {"preparedcontext": "Кошельки", "request": "срез авторизаций кошельков за май"})
    assert status == 200 and body["sources"] == []
    assert "в базе знаний не нашлось" in body["response"] and "http" not in body["response"]


async def test_without_its_database_the_analyst_answers_without_sources(postgres, openai_server, start_analyst):
    # The database does not exist: not ready (so Kubernetes sends no traffic), yet a request that
    # still arrives gets an answer, with no sources and no link that could not be checked.
    analyst = await start_analyst(ready=False, database_url=postgres.url_for("no_such_database"), database_timeout=1, **llm(openai_server))
    status, body, _ = await get(f"{analyst.url}/health/ready")
    assert status == 503 and body["checks"]["database"]["ok"] is False
    answer = f"Откройте {WALLET_AUTH}"
    openai_server.push(Reply(text=json.dumps({"is_enough": True, "response": answer, "action": "ответить сообщением"}, ensure_ascii=False)))
    status, body, _ = await post(f"{analyst.url}/prepare-analititcs", WALLET_REQUEST)
    assert status == 200 and body["sources"] == [] and body["response"] == f"Откройте {REMOVED_MARK}"
    assert model_payload(openai_server)["sources"] == []
    status, body, _ = await get(f"{analyst.url}/knowledge/documents")
    assert status == 503 and body["statusCode"] == 503, "the admin API says the database is away"


async def test_only_the_users_words_of_a_discussion_are_searched(database_url, start_analyst):
    # The system's clarifying question names many topics; they must not become sources. The discussion
    # comes typed (contract.DiscussionTurn); `request` holds it as text for peers that read only that.
    discussion = [
        {"role": "user", "text": "Я хочу аналитику"},
        {"role": "assistant", "text": "Уточните, пожалуйста, к какой системе относится запрос (кошельки, карты, платежи, "
                                      "отчётность, доступ к данным) и что вы хотите получить: выгрузку, отчёт, доступ, доработку?"},
        {"role": "user", "text": "авторизации кошельков за май по кодам ответа"},
    ]
    analyst = await start_analyst(database_url=database_url, knowledge_dir=str(SAMPLES), llm_provider="offline")
    status, body, _ = await post(f"{analyst.url}/prepare-analititcs", {
        "context": "Авторизации кошельков", "request": "\n".join(turn["text"] for turn in discussion), "discussion": discussion,
    })
    assert status == 200
    urls = [s["url"] for s in body["sources"]]
    assert urls[0] == WALLET_AUTH and ACCESS not in urls
    assert not any("Reporting+Portal" in url or "Chargebacks" in url for url in urls)
