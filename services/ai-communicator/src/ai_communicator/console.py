"""The operator console at /operator/: conversations, one conversation in full, taking one over.

Who may enter: a signed-in web user (the same proxy header the web chat believes, only from
WEB_TRUSTED_PROXIES) whose e-mail is in OPERATORS; anyone else gets 403, and in anonymous mode
everyone does. Pages are rendered here (no script, no CDN: links, forms and buttons, so the
keyboard does everything) under the chat page's Content-Security-Policy. A form posted from
another site is refused (Sec-Fetch-Site), since the proxy's sign-in cookie rides along with it.

An operator's reply is stored by the secretary as a turn and delivered here on the user's channel:
Telegram to the chat, e-mail as a reply in the thread, the web chat by its page's next poll.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from html import escape
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from multyworkemon_common.context import trace
from multyworkemon_common.contract import CHANNELS, OperatorReply, OperatorReplyStored, TakeOver
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.logging import get_logger

from .channels.web import IDENTITY, PAGE_HEADERS
from .messages import Failure
from .secretary import Secretary

log = get_logger("ai_communicator.console")
PAGE_SIZE = 20
STATUSES = {
    "": "все", "clarifying": "ждут ответа пользователя", "escalated": "переданы сотруднику", "answered": "отвечены",
    "failed": "с ошибкой", "operator": "у оператора", "open": "открыты", "closed": "закрыты",
}
CHANNEL_NAMES = {"": "все", "email": "e-mail", "tg": "Telegram", "direct": "веб-чат"}
# Sends an operator's reply on the user's channel; returns the sent message's id.
Deliver = Callable[[OperatorReplyStored, str], Awaitable[str | None]]
SECRETARY = web.AppKey("console_secretary", Secretary)
DELIVERY = web.AppKey("console_delivery", dict)
OPERATORS = web.AppKey("console_operators", frozenset)


def operator(request: web.Request) -> str:
    """The signed-in operator, or 403."""
    sender = request.app[IDENTITY].sender(request)
    if not sender.verified or sender.username not in request.app[OPERATORS]:
        raise web.HTTPForbidden(text="The operator console is for signed-in operators only (OPERATORS)", headers=PAGE_HEADERS)
    return sender.username


def _page(title: str, who: str, body: str) -> web.Response:
    html = f"""<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} — консоль оператора MultyWorkemon</title><link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/operator.css"></head>
<body><header><nav aria-label="Разделы"><a href="/operator/">Разговоры</a> <a href="/operator/?status=escalated">Ждут сотрудника</a>
<a href="/operator/?status=operator">У операторов</a></nav><p class="who">Оператор: {escape(who)}</p></header>
<main><h1>{escape(title)}</h1>{body}</main></body></html>"""
    return web.Response(text=html, content_type="text/html", headers=PAGE_HEADERS)


def _options(choices: dict[str, str], chosen: str) -> str:
    return "".join(
        f'<option value="{escape(value)}"{" selected" if value == chosen else ""}>{escape(label)}</option>'
        for value, label in choices.items()
    )


async def conversations(request: web.Request) -> web.Response:
    who = operator(request)
    query = request.query
    status = query.get("status", "") if query.get("status", "") in STATUSES else ""
    channel = query.get("channel", "") if query.get("channel", "") in CHANNEL_NAMES else ""
    person = query.get("person", "").strip()[:256]
    page = int(query["page"]) if query.get("page", "").isdigit() and 0 < len(query["page"]) < 7 else 1
    params = {k: v for k, v in (("status", status), ("channel", channel), ("username", person)) if v}
    listing = await request.app[SECRETARY].client.get_json(
        "/conversations", {**params, "limit": str(PAGE_SIZE), "offset": str((page - 1) * PAGE_SIZE)}
    )
    rows = "".join(
        f"""<tr><td><a href="/operator/conversations/{c['id']}">№{c['id']}</a></td><td>{escape(c['updated_at'][:19].replace('T', ' '))}</td>
<td>{escape(CHANNEL_NAMES.get(c['channel'], c['channel']))}</td><td>{escape(c['username'])}</td>
<td>{escape(_status(c))}</td><td>{c['turns']}</td><td>{escape(_short(c.get('last_request') or ''))}</td></tr>"""
        for c in listing["items"]
    ) or '<tr><td colspan="7">Ничего не найдено</td></tr>'
    keep = {"status": status, "channel": channel, "person": person}
    pages = []
    if page > 1:
        pages.append(f'<a rel="prev" href="/operator/?{escape(urlencode({**keep, "page": page - 1}))}">← новее</a>')
    if page * PAGE_SIZE < listing["total"]:
        pages.append(f'<a rel="next" href="/operator/?{escape(urlencode({**keep, "page": page + 1}))}">старше →</a>')
    body = f"""<form method="get" action="/operator/" class="filters" role="search">
<label>Статус <select name="status">{_options(STATUSES, status)}</select></label>
<label>Канал <select name="channel">{_options(CHANNEL_NAMES, channel)}</select></label>
<label>Пользователь <input name="person" value="{escape(person)}" placeholder="smirnovanton"></label>
<button type="submit">Показать</button></form>
<p>Всего: {listing['total']}, страница {page}.</p>
<table><thead><tr><th>Разговор</th><th>Обновлён (UTC)</th><th>Канал</th><th>Пользователь</th><th>Статус</th><th>Сообщений</th>
<th>Последний запрос</th></tr></thead><tbody>{rows}</tbody></table>
<nav aria-label="Страницы" class="pages">{' '.join(pages)}</nav>"""
    return _page("Разговоры", who, body)


async def conversation(request: web.Request) -> web.Response:
    who = operator(request)
    conversation_id = _id(request)
    try:
        c = await request.app[SECRETARY].client.get_json(f"/conversations/{conversation_id}")
    except UpstreamError as exc:
        if exc.answered == 404:
            raise web.HTTPNotFound(text="Такого разговора нет") from None
        raise
    notice = {"sent": "Ответ отправлен пользователю.", "stored": "Ответ сохранён; веб-чат пользователя покажет его.",
              "failed": "Ответ сохранён, но доставить его не удалось: смотрите результат действия ниже."}.get(request.query.get("done", ""), "")
    turns = "".join(_turn(t) for t in c["turns"])
    held = c.get("taken_by")
    if held == who:
        control = f"""<form method="post" action="/operator/conversations/{c['id']}/reply" class="reply">
<label for="reply-text">Ваш ответ пользователю ({escape(CHANNEL_NAMES.get(c['channel'], c['channel']))})</label>
<textarea id="reply-text" name="text" rows="4" maxlength="20000" required></textarea>
<button type="submit">Отправить ответ</button></form>
<form method="post" action="/operator/conversations/{c['id']}/release"><button type="submit" class="secondary">Вернуть боту</button></form>"""
    else:
        taken = f"<p>Сейчас разговор ведёт оператор {escape(held)}.</p>" if held else "<p>Разговор ведёт бот.</p>"
        control = f"""{taken}<form method="post" action="/operator/conversations/{c['id']}/take"><button type="submit">Взять разговор</button></form>"""
    body = f"""<p role="status">{escape(notice)}</p>
<dl class="facts"><dt>Канал</dt><dd>{escape(CHANNEL_NAMES.get(c['channel'], c['channel']))}</dd><dt>Пользователь</dt><dd>{escape(c['username'])}</dd>
<dt>Статус</dt><dd>{escape(_status(c))}</dd><dt>Уточнений</dt><dd>{c['clarifications']}</dd><dt>Начат</dt><dd>{escape(c['created_at'][:19])}</dd></dl>
<section aria-label="Управление" class="control">{control}</section>
<ol class="turns">{turns}</ol>"""
    return _page(f"Разговор №{c['id']}", who, body)


def _turn(t: dict[str, Any]) -> str:
    if t.get("operator"):
        return f"""<li class="turn operator"><h2>Оператор {escape(t['operator'])} · {escape(t['created_at'][:19])}</h2>
<p class="text">{escape(t.get('response') or '')}</p>{_results(t)}</li>"""
    sources = "".join(f"<li>{_link(s['url'], s['title'])} ({s.get('score', 0):.2f})</li>" for s in t.get("sources") or [])
    timings = ", ".join(f"{escape(k)}: {v} мс" for k, v in (t.get("timings") or {}).items())
    feedback = {"up": "👍 помогло", "down": "👎 не помогло"}.get(t.get("feedback") or "", "нет")
    error = f"<p class=\"error\">Ошибка {t['error_status']}: {escape(t['error'] or '')}</p>" if t.get("error") else ""
    answer = escape(t.get("response") or "") or "<em>не отвечено (разговор у оператора или ошибка)</em>"
    return f"""<li class="turn"><h2>Сообщение пользователя · {escape(t['created_at'][:19])} · {escape(t['status'])}</h2>
<p class="text">{escape(t['request'])}</p>
<dl><dt>Угадыватель</dt><dd>{_yes(t.get('guesser_is_enough'))}: {escape(t.get('guesser_response') or '—')}</dd>
<dt>Аналитик</dt><dd>{escape(t.get('analyst_action') or '—')}: {escape(t.get('analyst_response') or '—')}</dd>
<dt>Ответ</dt><dd>{answer}</dd><dt>Действие</dt><dd>{escape(t.get('action') or '—')}</dd>
<dt>Источники</dt><dd>{f'<ol>{sources}</ol>' if sources else '—'}</dd><dt>Оценка</dt><dd>{feedback}</dd>
<dt>Время</dt><dd>{timings or '—'}</dd></dl>{error}{_results(t)}</li>"""


def _results(t: dict[str, Any]) -> str:
    rows = "".join(
        f"<li>{escape(r['action'])}: {escape(r['status'])}{' · ' + escape(r['external_id']) if r.get('external_id') else ''}"
        f"{' · ' + escape(r['detail']) if r.get('detail') else ''}</li>"
        for r in t.get("action_results") or []
    )
    return f'<h3>Что сделано</h3><ul class="results">{rows}</ul>' if rows else ""


async def take(request: web.Request) -> web.Response:
    return await _hand(request, "take")


async def release(request: web.Request) -> web.Response:
    return await _hand(request, "release")


async def _hand(request: web.Request, what: str) -> web.Response:
    who = _posting_operator(request)
    conversation_id = _id(request)
    await request.app[SECRETARY].client.post_json(f"/conversations/{conversation_id}/{what}", TakeOver(operator=who).model_dump())
    raise web.HTTPSeeOther(f"/operator/conversations/{conversation_id}")


async def reply(request: web.Request) -> web.Response:
    who = _posting_operator(request)
    conversation_id = _id(request)
    text = str((await request.post()).get("text", "")).replace("\r\n", "\n").strip()
    if not text or len(text) > 20_000:
        raise web.HTTPBadRequest(text="Напишите ответ (до 20 000 символов)")
    secretary = request.app[SECRETARY]
    with trace():
        try:
            body = await secretary.client.post_json(
                f"/conversations/{conversation_id}/operator-reply", OperatorReply(operator=who, text=text).model_dump()
            )
        except UpstreamError as exc:
            if exc.answered == 409:
                raise web.HTTPConflict(text="Сначала возьмите разговор: сейчас он не у вас") from None
            raise
        stored = OperatorReplyStored.model_validate(body)
        deliver = request.app[DELIVERY].get(stored.channel)
        if deliver is None:  # the web chat shows it on its next poll; nothing to send
            done = "stored"
        else:
            try:
                sent = await deliver(stored, text)
            except Failure as exc:
                log.warning("an operator's reply was not delivered", error=str(exc), labels={"turn_id": str(stored.turn_id)})
                await secretary.report(stored.turn_id, stored.action, "failed", detail=str(exc))
                done = "failed"
            else:
                await secretary.report(stored.turn_id, stored.action, "done", sent, f"operator {who} replied on {stored.channel}")
                done = "sent"
    raise web.HTTPSeeOther(f"/operator/conversations/{conversation_id}?done={done}")


def _posting_operator(request: web.Request) -> str:
    # The proxy's sign-in cookie goes along with a form another site makes the browser post.
    if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        raise web.HTTPForbidden(text="Forms are accepted from the console's own pages only")
    return operator(request)


def _id(request: web.Request) -> int:
    value = request.match_info["conversation_id"]
    if not value.isdigit() or len(value) > 18:
        raise web.HTTPNotFound(text="Такого разговора нет")
    return int(value)


def _status(c: dict[str, Any]) -> str:
    held = f" · у оператора {c['taken_by']}" if c.get("taken_by") else ""
    return STATUSES.get(c["status"], c["status"]) + held


def _link(url: str, title: str) -> str:
    # Only web links become links: a javascript: or data: URL in a document stays text.
    if url.startswith(("https://", "http://")):
        return f'<a href="{escape(url)}" rel="noopener noreferrer">{escape(title)}</a>'
    return f"{escape(title)} ({escape(url)})"


def _short(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _yes(value: bool | None) -> str:
    return {True: "достаточно", False: "мало данных", None: "—"}[value]


def add_console(app: web.Application, secretary: Secretary, delivery: dict[str, Deliver], operators: frozenset[str]) -> None:
    assert set(delivery) <= set(CHANNELS)
    app[SECRETARY] = secretary
    app[DELIVERY] = delivery
    app[OPERATORS] = operators
    app.router.add_get("/operator/", conversations)
    app.router.add_get("/operator/conversations/{conversation_id}", conversation)
    app.router.add_post("/operator/conversations/{conversation_id}/take", take)
    app.router.add_post("/operator/conversations/{conversation_id}/release", release)
    app.router.add_post("/operator/conversations/{conversation_id}/reply", reply)
