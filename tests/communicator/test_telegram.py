"""Telegram through the real aiogram against a local Bot API server; the actions (Jira, a colleague)."""

from __future__ import annotations

import asyncio

import structlog

from ai_communicator.channels import telegram as channel
from ai_communicator.channels.telegram import BUSY, HELP, NEW_DONE, NEW_FAILED, NOT_ALLOWED, WELCOME, split_text
from support.client import get
from support.communicator import EMPLOYEE_CHAT, metric, record_inbound, start_communicator
from support.jira_api import TOKEN as JIRA_TOKEN
from support.relay import Relay

ANTON = 4242  # chat id; the directory knows him as @smirnov_anton (Департамент клиентского сервиса)
SERGEY = 100003  # chat id the directory knows by telegram_id (ivanovsergey)


def tg_settings(telegram, **more):
    return {"telegram_bot_token": telegram.token, "telegram_api_url": telegram.url, **more}


async def turn_results(secretary: str, username: str, channel: str) -> list[list[tuple]]:
    _, page, _ = await get(f"{secretary}/conversations", {"username": username, "channel": channel})
    _, thread, _ = await get(f"{secretary}/conversations/{page['items'][0]['id']}")
    return [[(r["action"], r["status"], r["external_id"]) for r in t["action_results"]] for t in thread["turns"]]


async def test_commands_clarification_and_answer(core, telegram):
    communicator = await start_communicator(core.secretary, **tg_settings(telegram))
    try:
        telegram.user_says("/start", chat_id=ANTON, username="smirnov_anton")
        telegram.user_says("/help", chat_id=ANTON, username="smirnov_anton")
        assert await telegram.wait_sent(ANTON, 2) == [WELCOME, HELP]

        vague = telegram.user_says("Я хочу получать аналитику о операциях наших кошельков", chat_id=ANTON, username="smirnov_anton")
        sent = await telegram.wait_sent(ANTON, 3)
        assert "кошел" in sent[2].lower() and "?" in sent[2]
        assert (ANTON, "typing") in telegram.chat_actions, "a typing indicator while the secretary works"
        telegram.user_says("Меня интересуют операции авторизации за последний месяц", chat_id=ANTON, username="smirnov_anton")
        sent = await telegram.wait_sent(ANTON, 4)
        assert "авториз" in sent[3].lower()
        assert telegram.sent[-1]["reply_to"] is not None, "the answer replies to the user's message"

        # Acknowledged only after handling: every update is confirmed by a later offset.
        for _ in range(100):
            if vague + 1 in telegram.confirmed:
                break
            await asyncio.sleep(0.05)
        assert vague + 1 in telegram.confirmed and telegram.conflicts == 0
        assert [r for results in await turn_results(core.secretary, "smirnovanton", "tg") for r in results][0][:2] == ("уточнить", "done")
        assert await metric(communicator.url, "mw_channel_messages_processed_total", channel="tg") == 2
        assert await metric(communicator.url, "mw_channel_connected", channel="tg") == 1
    finally:
        await communicator.stop()


async def test_allow_list_keeps_strangers_out(core, telegram):
    communicator = await start_communicator(core.secretary, **tg_settings(telegram, telegram_allowed_users="smirnov_anton, 100003"))
    try:
        telegram.user_says("Нужна выгрузка платежей за октябрь", chat_id=999, username="stranger")
        assert await telegram.wait_sent(999) == [NOT_ALLOWED]
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=100003)  # allowed by id, no user name
        [answer] = await telegram.wait_sent(100003)
        assert "платеж" in answer.lower()
        _, page, _ = await get(f"{core.secretary}/conversations", {"channel": "tg"})
        assert [c["username"] for c in page["items"]] == ["ivanovsergey"], "the stranger never reached the secretary"
    finally:
        await communicator.stop()


async def test_jira_task_with_the_discussion(core, telegram, jira):
    settings = tg_settings(telegram, jira_base_url=jira.url, jira_project_key="MW", jira_token=JIRA_TOKEN)
    communicator = await start_communicator(core.secretary, **settings)
    try:
        telegram.user_says("Заведи задачу в jira: доработать витрину авторизаций кошельков, добавить коды ответа", chat_id=ANTON, username="smirnov_anton")
        [issue] = await jira.wait_issues(1)
        [told] = await telegram.wait_sent(ANTON)
        assert "MW-1" in told and f"{jira.url}/browse/MW-1" in told
        fields = issue["fields"]
        assert fields["project"] == {"key": "MW"} and fields["issuetype"] == {"name": "Task"}
        assert fields["summary"].startswith("Заведи задачу в jira")
        assert "Антон Смирнов" in fields["description"] and "Департамент клиентского сервиса" in fields["description"]
        assert "Обращение: Заведи задачу" in fields["description"] and "Ответ MultyWorkemon:" in fields["description"]
        [results] = await turn_results(core.secretary, "smirnovanton", "tg")
        assert results[0] == ("создать jira-task", "done", "MW-1")
        assert results[1][:2] == ("ответить сообщением", "done")
        assert await metric(communicator.url, "mw_actions_total", action="создать jira-task", outcome="done") == 1
    finally:
        await communicator.stop()


async def test_colleague_is_told_in_telegram(core, telegram, departments_file):
    communicator = await start_communicator(core.secretary, **tg_settings(telegram, departments_file=departments_file))
    try:
        telegram.user_says("Передай ответственному сотруднику: нужен доступ к витрине платежей", chat_id=ANTON, username="smirnov_anton")
        [note] = await telegram.wait_sent(EMPLOYEE_CHAT)
        assert "нужен доступ к витрине платежей" in note and "Антон Смирнов" in note
        [told] = await telegram.wait_sent(ANTON)
        assert "Ирина Соколова" in told
        [results] = await turn_results(core.secretary, "smirnovanton", "tg")
        assert results[0][:2] == ("написать в telegram сотруднику", "done") and results[0][2].startswith(f"{EMPLOYEE_CHAT}:")
    finally:
        await communicator.stop()


async def test_a_message_failing_every_time_gets_an_apology_and_the_bot_moves_on(core, telegram, jira):
    jira.fail_status = 500  # Jira answers, badly, every time: not an outage, so the tries count
    settings = tg_settings(telegram, jira_base_url=jira.url, jira_project_key="MW", jira_token=JIRA_TOKEN)
    communicator = await start_communicator(core.secretary, **settings)
    try:
        telegram.user_says("Заведи задачу в jira: доработать отчёт по платежам за октябрь", chat_id=ANTON, username="smirnov_anton")
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=100003)
        [apology] = await telegram.wait_sent(ANTON)
        assert apology.startswith("Извините")
        assert jira.requests == 3, "max_attempts tries, then no more"
        [answer] = await telegram.wait_sent(100003)
        assert "платеж" in answer.lower()
        assert await metric(communicator.url, "mw_channel_poison_messages_total", channel="tg") == 1
        assert await metric(communicator.url, "mw_channel_messages_retried_total", channel="tg") == 2
        assert await metric(communicator.url, "mw_actions_total", action="создать jira-task", outcome="failed") == 3
        [results] = await turn_results(core.secretary, "smirnovanton", "tg")
        assert results and all(r[:2] == ("создать jira-task", "failed") for r in results)
    finally:
        await communicator.stop()


async def test_a_telegram_user_is_their_user_id_never_a_name_they_chose(core, telegram):
    """Issue 10.5: a handle equal to someone's directory username does not make its owner that person."""
    communicator = await start_communicator(core.secretary, **tg_settings(telegram))
    seen = record_inbound(communicator)
    try:
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=999, username="smirnovanton")
        await telegram.wait_sent(999)
        [inbound] = seen
        # The id Telegram vouches for is the username; the handle travels apart, for the directory's telegram_username.
        assert (inbound.username, inbound.handle, inbound.verified, inbound.thread) == ("999", "smirnovanton", True, "tg:999")
        _, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "tg"})
        assert page["total"] == 0, "the stranger is not Anton"
    finally:
        await communicator.stop()


async def test_new_closes_the_chats_conversation(core, telegram):
    """Issue 12.5: /new closes the chat's thread on the secretary and says so; /help tells about it."""
    secretary = await Relay(core.secretary).start()
    communicator = await start_communicator(secretary.url, **tg_settings(telegram))
    seen = record_inbound(communicator)
    try:
        assert "/new" in HELP
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=ANTON, username="smirnov_anton")
        await telegram.wait_sent(ANTON)
        assert seen[0].thread == f"tg:{ANTON}"
        telegram.user_says("/new", chat_id=ANTON, username="smirnov_anton")
        assert (await telegram.wait_sent(ANTON, 2))[1] == NEW_DONE
        [close] = secretary.to("/conversations/close")
        assert close.method == "POST" and close.body == {"channel": "tg", "username": str(ANTON), "thread": f"tg:{ANTON}"}

        secretary.fail = lambda call: 503 if call.path == "/conversations/close" else None
        telegram.user_says("/new", chat_id=ANTON, username="smirnov_anton")
        assert (await telegram.wait_sent(ANTON, 3))[2] == NEW_FAILED
    finally:
        await communicator.stop()
        await secretary.close()


async def test_one_chats_retries_hold_up_no_other_chat_and_nothing_is_lost(core, telegram):
    """Issue 12.9: the secretary fails every message of Anton's chat; Sergey's is answered meanwhile."""
    secretary = await Relay(core.secretary).start()
    anton_says = ["Нужна выгрузка авторизаций кошельков за октябрь по статусам", "Нужен отчёт по платежам за сентябрь по дням", "И ещё по картам за август"]
    failing = set(anton_says)
    secretary.fail = lambda call: 503 if call.path == "/analyze-request" and (call.body or {}).get("request") in failing else None
    settings = tg_settings(telegram, telegram_chat_queue=2)
    communicator = await start_communicator(secretary.url, **settings)
    try:
        a1 = telegram.user_says(anton_says[0], chat_id=ANTON, username="smirnov_anton")
        await secretary.wait_calls("/analyze-request", 2)  # tried, failed, tried again: Anton's chat is in its retries
        b1 = telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=SERGEY)
        [answer] = await telegram.wait_sent(SERGEY, timeout=5)
        assert "платеж" in answer.lower()
        assert a1 not in telegram.confirmed and b1 not in telegram.confirmed, "nothing acknowledged past a message not yet handled"
        while not any(call.path.endswith("/action-result") for call in secretary.calls):
            await asyncio.sleep(0.05)  # the reply recorded: stopping now is not stopping halfway

        # A restart while Anton's message still fails: Telegram has kept both messages.
        await communicator.stop()
        communicator = await start_communicator(secretary.url, **settings)
        a2 = telegram.user_says(anton_says[1], chat_id=ANTON, username="smirnov_anton")
        a3 = telegram.user_says(anton_says[2], chat_id=ANTON, username="smirnov_anton")
        # Two of Anton's messages wait already: the third is declined at once, with a notice.
        assert await telegram.wait_sent(ANTON, timeout=10) == [BUSY] and telegram.replies_to(ANTON) == [a3]

        failing.clear()
        await telegram.wait_sent(ANTON, 3, timeout=20)
        assert telegram.replies_to(ANTON) == [a3, a1, a2], "the chat's own messages in order"
        await telegram.wait_confirmed([a1, b1, a2, a3])
        await asyncio.sleep(0.5)
        assert len(telegram.to(SERGEY)) == 1, "Sergey's message, sent again after the restart, is not answered twice"
        assert len(telegram.to(ANTON)) == 3
    finally:
        await communicator.stop()
        await secretary.close()


async def test_each_telegram_message_has_one_request_id(core, telegram, monkeypatch):
    """Issue 12.4: one id per message, on every call to the secretary (retries included) and in the channel's log lines."""
    secretary = await Relay(core.secretary).start()
    first_try = [True]

    def fail_once(call) -> int | None:
        if call.path == "/analyze-request" and first_try[0]:
            first_try[0] = False
            return 503
        return None

    secretary.fail = fail_once
    lines: list[tuple[str, str | None]] = []

    class Recorder:
        def __getattr__(self, level):
            return lambda event, *args, **kwargs: lines.append((event, structlog.contextvars.get_contextvars().get("trace_id")))

    monkeypatch.setattr(channel, "log", Recorder())
    communicator = await start_communicator(secretary.url, **tg_settings(telegram))
    try:
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=SERGEY)
        await telegram.wait_sent(SERGEY)
        second_message = telegram.user_says("Нужен отчёт по картам за сентябрь по дням", chat_id=SERGEY)
        await telegram.wait_confirmed([second_message])  # handled to the end, its last line logged
        ids = [call.headers.get("X-Request-ID") for call in secretary.calls]
        tried, retried, second = [call.headers.get("X-Request-ID") for call in secretary.to("/analyze-request")]
        assert tried and tried == retried and second and second != tried, ids
        assert set(ids) == {tried, second}, "every call for a message carries its id"
        assert [(event, trace) for event, trace in lines if "Telegram message" in event] == [
            ("Telegram message not handled; will retry", tried), ("Telegram message answered", tried), ("Telegram message answered", second),
        ]
    finally:
        await communicator.stop()
        await secretary.close()


def test_long_answers_are_split_at_telegram_limit():
    paragraph = "Строка ответа со ссылкой на источник. " * 20
    text = "\n\n".join([paragraph] * 30)
    pieces = split_text(text)
    assert len(pieces) > 1 and all(len(p) <= 4096 for p in pieces)
    assert "".join(pieces).replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    assert split_text("x" * 9000) == ["x" * 4096, "x" * 4096, "x" * 808]
