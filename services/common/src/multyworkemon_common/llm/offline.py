"""The built-in offline model: deterministic, no network, answers the same JSON an LLM would.

It reads the request fields from the same message a real model gets and decides by rules about
fintech vocabulary: which domain a request is about, what the person wants, and whether the
details are specific enough. It is meant for demos, local runs and CI, not to rival an LLM.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from ..contract import (
    ACTION_DEPARTMENT_MAILING,
    ACTION_JIRA,
    ACTION_REPLY_MESSAGE,
    ACTION_TELEGRAM_EMPLOYEE,
    DiscussionTurn,
    users_words,
)
from .base import ChatResult, LLMBadOutput
from .structured import read_payload


@dataclass(frozen=True)
class Domain:
    key: str
    name: str
    stems: tuple[str, ...]
    # Where such requests are usually served; used when the knowledge base gives no source.
    where: str


DOMAINS = (
    Domain("wallets", "операции кошельков (домен B2C)", ("кошел", "wallet"), "аналитический куб операций кошельков и витрина движения средств"),
    Domain("authorizations", "авторизационные операции", ("авториз", "authoriz", "auth "), "аналитический куб авторизаций (статусы, коды ответа, эквайер)"),
    Domain("payments", "платежи и переводы", ("платеж", "платёж", "перевод", "payment", "transfer", "p2p"), "витрина платежей в хранилище данных и отчёты платёжного шлюза"),
    Domain("cards", "карточные операции", ("карт", "card"), "процессинг карт и куб карточных транзакций"),
    Domain("reporting", "отчётность", ("отчет", "отчёт", "report", "дашборд", "dashboard"), "BI-портал отчётности и каталог отчётов"),
    Domain("access", "доступ к данным", ("доступ", "access", "права", "permission", " роль", " роли"), "портал заявок на доступ к данным (владелец данных согласует)"),
    Domain("antifraud", "антифрод", ("фрод", "fraud", "мошен"), "система антифрода и её витрина инцидентов"),
    Domain("clients", "клиентские данные", ("клиент", "customer", "client"), "клиентская витрина (CRM) в хранилище данных"),
    Domain("limits", "лимиты и идентификация", ("лимит", "limit", "идентифик", "identific", "kyc"), "правила KYC и лимиты кошелька"),
    Domain("acquiring", "эквайринг", ("мерчант", "merchant", "эквайр", "acquir"), "отчёт по оборотам мерчантов"),
    Domain("dwh", "хранилище данных", ("хранилищ", "dwh", "витрин", "загруз", "выгруз", "data team", "команде данных"), "хранилище данных и его витрины"),
    Domain("quality", "качество данных", ("сверк", "сверит", "расхожд", "задвоил", "reconcil", "quality"), "сверка данных и контроль качества"),
    Domain("tasks", "задачи команде данных", ("jira",), "проект DATA в Jira"),
)

INTENTS = {
    "analytics": ("аналитик", "срез", "выгруз", "статистик", "метрик", "analytics", "выборк", "посчитать", "сколько"),
    "development": ("доработ", "разработ", "добав", "сделать новый", "feature", "автоматиз"),
    "check": ("провер", "сверк", "сверит", "достовер", "reconcil", "расхожд"),
    # A question asks for an explanation: it is clear enough without periods and measures.
    "howto": ("как ", "где ", "что так", "почему", "зачем", "когда ", "какие ", "какой ", "кто ", "how ", "what ", "where ",
              "why ", "when ", "who "),
    "access": ("доступ", "access", "права"),
}

# Words that make a request concrete: operation types, periods, measures, breakdowns.
SPECIFICS = (
    "авториз", "пополнен", "списан", "вывод", "возврат", "refund", "chargeback", "отклон", "декл",
    "за день", "недел", "месяц", "квартал", "за год", "вчера", "сегодня", "ежеднев", "еженедел", "ежемесяч", "daily", "monthly",
    "202", "январ", "феврал", "март", "апрел", "мая", "июн", "июл", "август", "сентябр", "октябр", "ноябр", "декабр",
    "количеств", "сумм", "доля", "статус", "код ответа", "count", "amount", "status",
    "по дням", "по месяц", "в разрезе", "по клиент", "по мерчант", "по регион", "по эквайер",
    "движени", "остат", "баланс", "комисси", "витрин", "куб", "таблиц",
    "top-up", "withdraw", "refund", "by day", "per day", "weekly", "last month", "last week", "quarter", "october", "november",
    "december", "january", "september",
)

# Asking for work to be done (an imperative, or "нужно доработать"), not naming Jira: a question
# about Jira ("как поставить задачу в Jira?") is answered, not turned into a task.
_TASK = (
    "заведи", "заведите", "создай", "создайте", "поставь ", "поставьте", "оформи", "оформите", "сделай", "сделайте",
    "доработ", "разработ", "автоматизир", "create a ticket", "create a task", "open a ticket", "file a ticket", "please create",
)
_ACTION_RULES = (
    (ACTION_DEPARTMENT_MAILING, ("рассылк", "всему департаменту", "всем сотрудникам", "mailing list")),
    (ACTION_JIRA, _TASK),
    (ACTION_TELEGRAM_EMPLOYEE, ("передай", "свяжи", "соедини")),
)

QUESTION_NO_DOMAIN = (
    "Уточните, пожалуйста, к какой системе или продукту относится запрос (кошельки, карты, платежи, "
    "отчётность, доступ к данным) и что вы хотите получить: выгрузку, отчёт, доступ, доработку или консультацию?"
)


def _found(text: str, stems: tuple[str, ...]) -> list[str]:
    return [stem for stem in stems if stem in text]


class OfflineModel:
    """Implements ChatModel without a network: same messages in, same JSON text out."""

    provider = "offline"
    model = "offline-rules-v1"

    async def chat(self, messages: list[dict[str, Any]], *, schema_name: str, schema: dict[str, Any]) -> ChatResult:
        try:
            payload = read_payload(messages)
        except ValueError as exc:
            raise LLMBadOutput("the offline model got no request data") from exc
        if schema_name == "ContextDecision":
            answer = self.decide_context(payload)
        elif schema_name == "AnalyticsPlan":
            answer = self.plan_analytics(payload)
        else:
            raise LLMBadOutput(f"the offline model cannot answer {schema_name}")
        text = json.dumps(answer, ensure_ascii=False)
        prompt_words = sum(len(str(m.get("content", "")).split()) for m in messages)
        return ChatResult(text=text, prompt_tokens=prompt_words, completion_tokens=len(text.split()))

    # The guesser's question: is the request understood?
    def decide_context(self, payload: dict[str, Any]) -> dict[str, Any]:
        discussion = _discussion(payload)
        text = _normalise(users_words(discussion, str(payload.get("request", ""))))
        domains = [d for d in DOMAINS if _found(text, d.stems)]
        intents = [name for name, stems in INTENTS.items() if _found(text, stems)]
        specifics = _found(text, SPECIFICS) + _picked_option(discussion)
        task = _found(text, _TASK)
        if not domains and not (task and specifics):
            return {"is_enough": False, "response": QUESTION_NO_DOMAIN}
        domain_names = ", ".join(d.name for d in domains) or "задача команде данных"
        if not specifics and not task and "howto" not in intents and "access" not in intents:
            return {"is_enough": False, "response": _question_for(domains[0], intents)}
        who = " ".join(str(p) for p in (payload.get("position"), payload.get("department")) if p and p not in UNKNOWN) or "Сотрудник"
        wants = {
            "analytics": "получить аналитику (срез или выгрузку)",
            "development": "заказать доработку",
            "check": "проверить достоверность данных",
            "howto": "узнать, как это работает",
            "access": "получить доступ к данным",
        }
        goal = "; ".join(wants[i] for i in intents) or "получить консультацию"
        details = ", ".join(sorted(set(specifics))[:6])
        context = f"{who.capitalize()} хочет {goal}. Предметная область: {domain_names}."
        if details:
            context += f" Детали запроса: {details}."
        return {"is_enough": True, "response": context}

    # The analyst's answer: what to do and where.
    def plan_analytics(self, payload: dict[str, Any]) -> dict[str, Any]:
        request = users_words(_discussion(payload), str(payload.get("request", "")))
        text = _normalise(f"{payload.get('context', '')} {request}")
        request_text = _normalise(request)
        # A reply goes back on the message's own channel: the secretary picks which reply that is.
        action = next((a for a, stems in _ACTION_RULES if _found(request_text, stems)), ACTION_REPLY_MESSAGE)
        sources = [s for s in payload.get("sources", []) if isinstance(s, dict)]
        domains = [d for d in DOMAINS if _found(text, d.stems)]
        if sources:
            cited = "; ".join(f"[{s.get('n', i + 1)}] {s.get('title', '')}" for i, s in enumerate(sources[:3]))
            lines = [f"Для этого запроса подойдут материалы базы знаний: {cited}."]
            first = sources[0]
            if first.get("excerpt"):
                lines.append(f"Главное из [{first.get('n', 1)}]: {_shorten(_gist(str(first['excerpt'])), 400)}")
        elif domains:
            where = "; ".join(d.where for d in domains[:2])
            lines = [
                f"Запрос относится к области «{domains[0].name}». Начните с: {where}.",
                "Подходящих материалов в базе знаний не нашлось, поэтому ссылок нет: уточните детали у владельца данных.",
            ]
        else:
            lines = ["Не удалось определить систему для этого запроса, и в базе знаний нет подходящих материалов."]
        if action == ACTION_JIRA:
            lines.append("Создаю задачу в Jira с описанием запроса для команды данных.")
        elif action == ACTION_TELEGRAM_EMPLOYEE:
            lines.append("Передаю запрос ответственному сотруднику в Telegram.")
        elif action == ACTION_DEPARTMENT_MAILING:
            lines.append("Отправляю сообщение в рассылку департамента.")
        return {"is_enough": bool(sources or domains), "response": " ".join(lines), "action": action}


UNKNOWN = ("не указано", "не указана")
# Answers that pick an option by its place or take them all ("первое", "оба", "все операции").
# Words of the question's own framing, not of its options.
_FRAMING = {"уточни", "пожалу", "интере", "какие", "какой", "каком", "котор", "нужно", "нужны", "именно", "запрос", "контек", "недост"}
_CHOICE_WORDS = ("перв", "втор", "трет", "оба", "обе", "все ", "всё ", "любой", "любые", "first", "second", "both", "all ")


def _discussion(payload: dict[str, Any]) -> list[DiscussionTurn]:
    return [DiscussionTurn.model_validate(turn) for turn in payload.get("discussion") or [] if isinstance(turn, dict)]


def _picked_option(discussion: list[DiscussionTurn]) -> list[str]:
    """The user's last answer when it picks one of the options the question before it offered.

    A clarifying question offers choices ("движения средств ... или все операции ..."); an answer
    that names one of them, or picks by place, is specific even with none of the SPECIFICS words.
    """
    if len(discussion) < 2 or discussion[-1].role != "user" or discussion[-2].role != "assistant":
        return []
    answer, question = _normalise(discussion[-1].text), _normalise(discussion[-2].text)
    choices = " ".join(sentence for sentence in re.split(r"[.?!]", question) if " или " in sentence)
    offered = {word[:6] for word in re.findall(r"\w{5,}", choices)} - _FRAMING
    named = [word for word in re.findall(r"\w{5,}", answer) if word[:6] in offered]
    return named or _found(answer, _CHOICE_WORDS)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower().replace("ё", "е")) + " "


def _gist(excerpt: str) -> str:
    """The excerpt's first part: the document's summary. The matching passages after it (joined by
    " … ") often repeat the summary's sentences, cut differently, so quoting both pasted them twice."""
    return excerpt.split(" … ")[0]


def _shorten(text: str, limit: int) -> str:
    """At most `limit` characters, cut after a whole sentence (or word), never mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence = max(cut.rfind(". "), cut.rfind("! "), cut.rfind("? "))
    return cut[: sentence + 1] if sentence > limit // 3 else cut[: cut.rfind(" ")].rstrip(",;:") + "…"


def _question_for(domain: Domain, intents: list[str]) -> str:
    if domain.key == "wallets":
        return (
            "Контекста недостаточно: какие операции кошельков вас интересуют — движения средств "
            "(пополнения, списания, переводы) или все операции, включая авторизации? За какой период и в каком разрезе?"
        )
    if "analytics" in intents:
        return f"Уточните, пожалуйста, какие именно данные по теме «{domain.name}» нужны: какие операции или показатели, за какой период и в каком разрезе?"
    return f"Уточните, пожалуйста, что именно нужно по теме «{domain.name}»: выгрузка, отчёт, доступ, доработка или объяснение, как это работает?"
