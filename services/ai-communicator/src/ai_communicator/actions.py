"""The actions that do more than reply: a Jira task, a note to a colleague, a department mailing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import yaml
from pydantic import BaseModel

from multyworkemon_common.contract import ACTION_DEPARTMENT_MAILING, ACTION_JIRA, ACTION_TELEGRAM_EMPLOYEE, AnalysisResponse, PersonInfo

from .jira import Jira
from .mailtext import build_note
from .messages import ActionOutcome, Inbound

SIGNATURE = "MultyWorkemon — помощник по внутренним запросам"
CHANNEL_NAMES = {"email": "e-mail", "tg": "Telegram", "direct": "веб-чат"}


class Route(BaseModel):
    """Who is told about a department's requests (one entry of the departments YAML)."""

    telegram_chat_id: int | None = None
    contact: str = ""  # the name the user is told
    mailing_list: str = ""


class DepartmentsFile(BaseModel):
    departments: dict[str, Route] = {}
    default: Route | None = None


class Departments:
    """Routes by department name (the users directory's), with a default for the rest."""

    def __init__(self, routes: dict[str, Route], default: Route | None):
        self.routes = {name.strip().lower(): route for name, route in routes.items()}
        self.default = default

    @classmethod
    def load(cls, path: str) -> "Departments":
        if not path:
            return cls({}, None)
        data = DepartmentsFile.model_validate(yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {})
        return cls(data.departments, data.default)

    def route(self, department: str | None) -> Route | None:
        return self.routes.get((department or "").strip().lower()) or self.default


class Actions:
    def __init__(
        self,
        departments: Departments,
        *,
        jira: Jira | None,
        send_telegram: Callable[[int, str], Awaitable[str]] | None,
        send_mail: Callable[[Any], Awaitable[str]] | None,
        sender_address: str,
    ):
        self.departments = departments
        self.jira = jira
        self.send_telegram = send_telegram
        self.send_mail = send_mail
        self.sender_address = sender_address

    async def carry_out(self, answer: AnalysisResponse, message: Inbound) -> ActionOutcome:
        """Done, or failed for good (not configured) with a note saying so; Failure when worth retrying."""
        person = answer.person or PersonInfo(username=message.username, department="", position="", known=False)
        brief = _brief(answer, message, person)
        if answer.action == ACTION_JIRA:
            return await self._jira(answer, brief)
        route = self.departments.route(person.department)
        if answer.action == ACTION_TELEGRAM_EMPLOYEE:
            return await self._telegram(answer, brief, route)
        if answer.action == ACTION_DEPARTMENT_MAILING:
            return await self._mailing(answer, brief, route, person)
        raise ValueError(f"not an action to carry out: {answer.action}")

    async def _jira(self, answer: AnalysisResponse, brief: "Brief") -> ActionOutcome:
        if self.jira is None:
            return _not_done(answer.action, "Jira не подключена", "Создать задачу в Jira автоматически не получилось: Jira не подключена. Передайте, пожалуйста, запрос в поддержку.")
        key = await self.jira.create_issue(brief.summary, brief.text, ["multyworkemon", f"channel-{brief.channel}"])
        return ActionOutcome(answer.action, "done", key, f"Создана задача {key}: {self.jira.browse_url(key)}")

    async def _telegram(self, answer: AnalysisResponse, brief: "Brief", route: Route | None) -> ActionOutcome:
        if self.send_telegram is None or route is None or route.telegram_chat_id is None:
            why = "Telegram-бот не подключён" if self.send_telegram is None else "для департамента не задан ответственный"
            return _not_done(answer.action, why, "Передать запрос сотруднику автоматически не получилось. Напишите, пожалуйста, в поддержку вашего департамента.")
        sent = await self.send_telegram(route.telegram_chat_id, f"Запрос, который нужно взять в работу (MultyWorkemon)\n\n{brief.text}")
        who = route.contact or "ответственный сотрудник вашего департамента"
        return ActionOutcome(answer.action, "done", sent, f"Я передал ваш запрос в Telegram: {who}.")

    async def _mailing(self, answer: AnalysisResponse, brief: "Brief", route: Route | None, person: PersonInfo) -> ActionOutcome:
        if self.send_mail is None or route is None or not route.mailing_list:
            why = "почта не подключена" if self.send_mail is None else "для департамента не задана рассылка"
            return _not_done(answer.action, why, "Отправить сообщение в рассылку департамента автоматически не получилось. Напишите, пожалуйста, в неё сами.")
        note = build_note(self.sender_address, route.mailing_list, f"[MultyWorkemon] {brief.summary}", brief.text, SIGNATURE)
        sent = await self.send_mail(note)
        return ActionOutcome(answer.action, "done", sent, f"Сообщение отправлено в рассылку департамента: {route.mailing_list}.")


def _not_done(action: str, why: str, note: str) -> ActionOutcome:
    # A setting that is missing does not fix itself: the user is told, the turn records it, no retries.
    return ActionOutcome(action, "failed", None, f"{note} ({why})")


@dataclass
class Brief:
    channel: str
    summary: str
    text: str


def _brief(answer: AnalysisResponse, message: Inbound, person: PersonInfo) -> Brief:
    """The request, the whole discussion and the answer, for a colleague or a Jira task."""
    who = person.display_name or message.sender_label or person.username
    about = ", ".join(p for p in (person.position, person.department) if p)
    lines = [f"От: {who}" + (f" ({about})" if about else "") + f", канал: {CHANNEL_NAMES.get(message.channel, message.channel)}"]
    if person.email:
        lines.append(f"E-mail: {person.email}")
    lines.append("")
    if answer.discussion:
        # The discussion up to the answer, which follows below.
        for n, turn in enumerate(answer.discussion[:-1]):
            label = "MultyWorkemon" if turn.role == "assistant" else ("Обращение" if n == 0 else "Ответ пользователя")
            lines.append(f"{label}: {turn.text}")
    else:
        lines.append(f"Обращение: {answer.request or message.text}")
    lines += ["", f"Ответ MultyWorkemon: {answer.response}"]
    if answer.sources:
        lines += ["", "Источники:"] + [f"- {s.title}: {s.url}" for s in answer.sources]
    if answer.conversation_id:
        lines += ["", f"Разговор №{answer.conversation_id} в MultyWorkemon (GET /conversations/{answer.conversation_id})."]
    # The summary becomes a mail Subject and a Jira title: one line, whatever the user typed.
    first = " ".join(((answer.request or message.text).strip().splitlines() or [""])[0].split())
    summary = first if len(first) <= 120 else first[:117].rstrip() + "..."
    return Brief(message.channel, summary or "Запрос из MultyWorkemon", "\n".join(lines))
