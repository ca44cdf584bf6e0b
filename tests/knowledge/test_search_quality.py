"""Search quality on the sample set: the document each request must find first.

Requests are Russian and English, with typos, other word forms and other ways of saying it;
the figure (share of requests answered right) is printed and must stay above the threshold, on the
sample set alone and among 1,000 noise pages (tests/support/knowledge_noise.py: pages on other
subjects that use the samples' words in passing, as a large wiki does).
"""

from __future__ import annotations

import pytest

from ai_systemanalitic.app import load_knowledge
from ai_systemanalitic.documents import read_folder
from support.knowledge_noise import NOISE_URL, write_pages

from .conftest import SAMPLES

WIKI = "https://wiki.example.internal/display"
WALLET_AUTH = f"{WIKI}/DATA/Wallet+Authorizations+Cube"
WALLET_OPS = f"{WIKI}/DATA/Wallet+Operations+Cube"
BALANCES = f"{WIKI}/DATA/dm_wallet_balance_movements"
CODES = f"{WIKI}/PROC/Authorization+Response+Codes"
GATEWAY = f"{WIKI}/PAY/Payment+Gateway+Statuses"
SBP = f"{WIKI}/PAY/SBP+Transfers+Report"
BI = f"{WIKI}/BI/Reporting+Portal"
REGULATORY = f"{WIKI}/FIN/Regulatory+Reporting"
ACCESS = f"{WIKI}/DATA/Data+Access+Requests"
CARDS = f"{WIKI}/PROC/Card+Transaction+Lifecycle"
CHARGEBACKS = f"{WIKI}/PROC/Chargebacks+and+Disputes"
ANTIFRAUD = f"{WIKI}/RISK/Antifraud+Rules+and+Incidents"
CLIENTS = f"{WIKI}/DATA/dm_client_360"
KYC = f"{WIKI}/COMP/KYC+and+Wallet+Limits"
ACQUIRING = f"{WIKI}/ACQ/Merchant+Acquiring"
DWH = f"{WIKI}/DATA/DWH+Overview"
JIRA = f"{WIKI}/DATA/How+to+Request+Data+Work"
RECONCILIATION = f"{WIKI}/DATA/Data+Reconciliation+and+Quality"

# (request, the document it must find first; None: nothing in the base is relevant)
TABLE = [
    ("Нужен срез авторизаций по кошелькам за вчера: сколько одобрено и отклонено", WALLET_AUTH),
    ("wallet authorisation approval rate by acquirer", WALLET_AUTH),  # British spelling: authoris- vs author-
    ("авторизацыи по кашелькам", WALLET_AUTH),  # two typos
    ("сколько пополнений кошельков было в прошлом месяце", WALLET_OPS),
    ("выводы с кошельков на карту по регионам", WALLET_OPS),
    ("остатки на кошельках на конец дня", BALANCES),
    ("что означает код ответа 51", CODES),
    ("почему отклонили платёж с кодом 05", CODES),
    ("статус перевода через СБП завис в processing", GATEWAY),
    ("отчёт по переводам СБП за неделю", SBP),
    ("где найти каталог отчетов", BI),  # е for ё
    ("форма 0409258 для ЦБ", REGULATORY),
    ("Как получить доступ к кубу авторизаций?", ACCESS),
    ("Как оформить заявку на доступ к данным", ACCESS),
    ("клиринг карточных транзакций", CARDS),
    ("chargeback dispute deadlines", CHARGEBACKS),
    ("клиент оспаривает списание по карте", CHARGEBACKS),
    ("мошеннические операции и фрод-алерты", ANTIFRAUD),
    ("anti-fraud rule change", ANTIFRAUD),
    ("сегменты клиентов и LTV", CLIENTS),
    ("customer segmentation data mart", CLIENTS),
    ("лимиты анонимного кошелька", KYC),
    ("идентефикация клиента упращенная", KYC),  # two typos
    ("комиссии мерчантов и обороты", ACQUIRING),
    ("Хочу посчитать оборот мерчантов по MCC", ACQUIRING),
    ("когда обновляется хранилище данных, SLA загрузки витрин", DWH),
    ("data warehouse layers", DWH),
    ("заказать выгрузку у команды данных в джире", JIRA),
    ("цифры в отчёте не сходятся с бухгалтерией", RECONCILIATION),
    ("погода в Москве завтра", None),
    ("рецепт борща", None),
    ("Хочу данные", None),  # too vague: only words most documents have
    # Written after the ranking was tuned on the rows above, as a check on it. Two changes came
    # of them: the coordination factor (16/20 of the positive rows before, 18/20 after) and the
    # filler words вопрос/работа/помощь; the misses stay as found.
    ("какая доля отказов в авторизациях по эквайерам за квартал", WALLET_AUTH),
    ("сколько активных кошельков было в марте", WALLET_OPS),
    ("выписка по кошельку клиента за полгода", BALANCES),  # misses: the client mart's title says "клиент"
    ("справочник кодов отказа", CODES),
    ("refund of a failed payment", GATEWAY),
    ("сколько переводов через систему быстрых платежей по QR", SBP),
    ("подписаться на отчёт по почте", BI),
    ("форма по операциям без согласия клиента", REGULATORY),
    ("холд по карте не снимается", CARDS),
    ("товар не получен, вернуть деньги по карте", CHARGEBACKS),
    ("изменить порог антифрод правила", ANTIFRAUD),
    ("ФИО и телефон клиентов для рассылки", CLIENTS),
    ("лимит остатка при упрощенной идентификации", KYC),
    ("выплаты мерчантам", ACQUIRING),
    ("Airflow DAG витрины опаздывают", DWH),
    ("ошибка в данных витрины платежей", RECONCILIATION),
    ("wallet top-ups by source last month", WALLET_OPS),  # misses: no English word for top-up in the document
    ("how to request access to the payments data mart", ACCESS),
    ("card clearing file", CARDS),
    ("куб авторизацый кошелков", WALLET_AUTH),  # two typos
    ("Привет, нужна помощь", None),
    ("у меня не работает принтер", None),
    ("когда зарплата", None),
    ("закажите пиццу в офис", None),  # misses: "офис" is in "бэк-офис" of the payment gateway's page
]
THRESHOLD = 0.9
# Among 1,000 noise pages the figure is 50/56 = 89 % (bench-kb: 91 % among 100,000, where the noise
# pages' words are too common to make them candidates). The three rows noise costs: "Хочу данные"
# (noise makes "данные" rarer than half the base, so it counts), "anti-fraud rule change" (noise pages
# mention fraud rules; the antifraud page has no "rule") and "ошибка в данных витрины платежей".
NOISE_THRESHOLD = 0.85


def test_the_table_is_big_enough_and_names_real_documents():
    urls = {d.url for d in read_folder(SAMPLES)}
    assert 12 <= len(urls) <= 20, "a realistic sample set"
    assert len(TABLE) >= 15
    assert {expected for _, expected in TABLE if expected} <= urls
    assert len({expected for _, expected in TABLE if expected}) == len(urls), "every sample document is somebody's answer"


async def test_search_quality_on_the_sample_set(samples, capsys):
    assert await quality(samples, "on the sample set", capsys) >= THRESHOLD


async def test_search_quality_among_noise_pages(knowledge, tmp_path, capsys):
    write_pages(SAMPLES, tmp_path, 1_000)
    await load_knowledge(knowledge, tmp_path)
    assert await quality(knowledge, "among 1,000 noise pages", capsys) >= NOISE_THRESHOLD
    found = await knowledge.search("куб авторизаций кошельков по кодам ответа", 10)
    assert not any(f.url.startswith(NOISE_URL) for f in found[:2]), "a page on the subject, not one that mentions its words"


async def quality(knowledge, where: str, capsys) -> float:
    rows = []
    for request, expected in TABLE:
        found = await knowledge.search(request)
        first = found[0].url if found else None
        rows.append((first == expected, request, expected, first, found[0].score if found else 0.0))
    hits = sum(ok for ok, *_ in rows)
    figure = hits / len(rows)
    with capsys.disabled():
        print(f"\nknowledge-base search quality {where}: {hits}/{len(rows)} = {figure:.0%} first-hit accuracy")
        for ok, request, expected, first, score in rows:
            if not ok:
                print(f"  MISS {request!r}: expected {expected}, got {first} ({score})")
    return figure


@pytest.mark.parametrize("request_text", ["погода в Москве завтра", "Хочу данные", "!!!", "12", ""])
async def test_nothing_relevant_finds_nothing(samples, request_text):
    assert await samples.search(request_text) == []


async def test_results_are_few_ranked_and_excerpted(samples):
    found = await samples.search("Нужна статистика авторизаций кошельков за май по кодам ответа")
    assert 1 <= len(found) <= 4, "KNOWLEDGE_MAX_SOURCES caps what the model reads"
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True)
    assert found[-1].score >= found[0].score * 0.3, "far weaker documents are left out"
    assert {WALLET_AUTH, CODES} <= {f.url for f in found}
    auth = next(f for f in found if f.url == WALLET_AUTH)
    assert auth.excerpt.startswith("Аналитический OLAP-куб"), "the summary comes first"
    assert "**" not in auth.excerpt and len(auth.excerpt) <= 900
