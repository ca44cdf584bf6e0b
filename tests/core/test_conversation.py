"""End to end across the three services: clarification rounds, the thread in PostgreSQL, idempotency."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import asyncpg

from support.client import get, post
from support.stack import start_stack

ROOT = Path(__file__).resolve().parents[2]
VAGUE = "Я хочу получать аналитику о операциях наших кошельков"
ANSWER = "Меня интересуют операции авторизации за последний месяц"


async def test_vague_request_then_clarification_then_answer(stack):
    url = f"{stack.secretary}/analyze-request"
    status, first, _ = await get(url, {"channel": "direct", "username": "smirnovanton", "request": VAGUE})
    assert status == 200
    assert first["is_enough"] is False and first["action"] == "уточнить"
    assert first["question"] and first["response"] == first["question"] == first["context-response"]
    assert first["request"] == VAGUE

    status, second, _ = await get(url, {"channel": "direct", "username": "smirnovanton", "request": ANSWER})
    assert status == 200
    assert second["is_enough"] is True
    assert second["action"] == "ответить сообщением"
    assert second["question"] == ""
    assert second["conversation_id"] == first["conversation_id"], "the answer continues the same conversation"
    assert second["request"] == VAGUE, "`request` is the original request of the conversation"
    assert "авториз" in second["response"].lower()

    # The whole thread is in the database, with what each service said.
    connection = await asyncpg.connect(stack.database_url)
    try:
        turns = await connection.fetch("SELECT * FROM turns WHERE conversation_id = $1 ORDER BY id", first["conversation_id"])
        conversation = await connection.fetchrow("SELECT * FROM conversations WHERE id = $1", first["conversation_id"])
    finally:
        await connection.close()
    assert [t["request"] for t in turns] == [VAGUE, ANSWER]
    assert [t["status"] for t in turns] == ["answered", "answered"]
    assert turns[0]["guesser_is_enough"] is False and turns[0]["question"] == first["question"]
    assert turns[1]["guesser_is_enough"] is True and turns[1]["analyst_response"] == second["response"]
    assert json.loads(turns[1]["timings"])["analyst_ms"] >= 0
    assert conversation["status"] == "answered" and conversation["clarifications"] == 1

    # Operators see the same thread through the API (with the service token when one is set).
    status, thread, _ = await get(f"{stack.secretary}/conversations/{first['conversation_id']}")
    assert status == 200 and [t["request"] for t in thread["turns"]] == [VAGUE, ANSWER]
    status, page, _ = await get(f"{stack.secretary}/conversations", {"username": "smirnovanton", "channel": "direct"})
    assert status == 200 and page["total"] == 1 and page["items"][0]["turns"] == 2


async def test_messages_sent_at_once_all_join_the_conversation_an_operator_holds(stack):
    url = f"{stack.secretary}/analyze-request"
    who = {"channel": "direct", "username": "ivanovsergey"}
    _, first, _ = await get(url, {**who, "request": VAGUE})
    status, _, _ = await post(f"{stack.secretary}/conversations/{first['conversation_id']}/take", {"operator": "op@example.com"})
    assert status == 200
    replies = await asyncio.gather(*(get(url, {**who, "request": f"{ANSWER} ({n})"}) for n in range(4)))
    assert [(status, answer["silent"]) for status, answer, _ in replies] == [(200, True)] * 4, "the bot stays silent"
    assert {answer["conversation_id"] for _, answer, _ in replies} == {first["conversation_id"]}
    connection = await asyncpg.connect(stack.database_url)
    try:
        conversations = await connection.fetchval("SELECT count(*) FROM conversations WHERE username = 'ivanovsergey'")
        stored = await connection.fetchval("SELECT count(*) FROM turns WHERE conversation_id = $1", first["conversation_id"])
    finally:
        await connection.close()
    assert (conversations, stored) == (1, 5), "one conversation: the first message and the four sent at once"


async def test_new_request_after_an_answer_starts_a_new_conversation(stack):
    url = f"{stack.secretary}/analyze-request"
    specific = "Нужен срез авторизаций кошельков за месяц по статусам"
    _, first, _ = await get(url, {"channel": "tg", "username": "petrova_elena", "request": specific})
    _, second, _ = await get(url, {"channel": "tg", "username": "petrova_elena", "request": specific})
    assert first["is_enough"] is True and second["is_enough"] is True
    assert first["conversation_id"] != second["conversation_id"]


async def test_channels_keep_separate_conversations(stack):
    url = f"{stack.secretary}/analyze-request"
    _, by_mail, _ = await get(url, {"channel": "email", "username": "smirnovanton", "request": VAGUE})
    _, by_chat, _ = await get(url, {"channel": "direct", "username": "smirnovanton", "request": ANSWER})
    assert by_mail["action"] == "уточнить"
    assert by_chat["conversation_id"] != by_mail["conversation_id"]
    _, mail_answer, _ = await get(url, {"channel": "email", "username": "smirnovanton", "request": ANSWER})
    assert mail_answer["conversation_id"] == by_mail["conversation_id"]
    assert mail_answer["action"] == "ответить на письмо", "the default reply on e-mail is a reply to the letter"


async def test_same_message_id_twice_returns_the_stored_answer_without_llm(database_url, openai_server):
    answers = iter([
        {"is_enough": True, "response": "Контекст: аналитика авторизаций кошельков"},
        {"is_enough": True, "response": "Откройте куб авторизаций [1]", "action": "ответить сообщением"},
    ])
    openai_server.default = lambda body: json.dumps(next(answers), ensure_ascii=False)
    stack = await start_stack(database_url, llm={"llm_provider": "openai", "llm_base_url": openai_server.base_url, "llm_api_key": "sk-test"})
    try:
        params = {"channel": "tg", "username": "smirnovanton", "request": "Срез авторизаций кошельков", "message_id": "chat42:msg7"}
        status, first, _ = await get(f"{stack.secretary}/analyze-request", params)
        assert status == 200 and first["response"] == "Откройте куб авторизаций [1]"
        calls = len(openai_server.requests)
        assert calls == 2
        status, again, _ = await post(f"{stack.secretary}/analyze-request", json=params)
        assert status == 200
        assert again == {**first, "repeated": True}
        assert len(openai_server.requests) == calls, "a repeated message calls no LLM"
        # The same id on another channel is another message.
        openai_server.default = lambda body: json.dumps({"is_enough": False, "response": "Что именно?"}, ensure_ascii=False)
        status, other, _ = await get(f"{stack.secretary}/analyze-request", {**params, "channel": "email"})
        assert status == 200 and other["turn_id"] != first["turn_id"]
    finally:
        await stack.stop()


async def test_fruitless_clarifications_bring_in_a_human(database_url):
    stack = await start_stack(database_url, secretary={"max_clarifications": 2})
    try:
        url = f"{stack.secretary}/analyze-request"
        for sender, escalation in (({"username": "smirnovanton", "verified": "true"}, "написать в telegram сотруднику"),
                                   ({"username": "someone"}, "ответить сообщением")):
            answers = []
            for text in ("Помогите", "Ну мне надо", "Не знаю", "Просто помогите"):
                status, body, _ = await get(url, {"channel": "direct", "request": text, **sender})
                assert status == 200
                answers.append(body)
            assert [a["action"] for a in answers[:2]] == ["уточнить", "уточнить"]
            assert answers[2]["action"] == escalation, "after two fruitless questions a colleague is told (for employees)"
            assert answers[3]["action"] == "уточнить", "the escalated conversation is closed; a new message starts afresh"
        assert "поддержку" in answers[2]["response"], "a stranger is told whom to write to instead"
    finally:
        await stack.stop()


async def test_users_directory_gives_department_and_position(database_url, openai_server):
    openai_server.default = lambda body: json.dumps({"is_enough": False, "response": "Уточните период"}, ensure_ascii=False)
    stack = await start_stack(
        database_url,
        llm={"llm_provider": "openai", "llm_base_url": openai_server.base_url},
        secretary={"users_file": str(ROOT / "services/ai-secretary/users.example.yaml")},
    )
    try:
        url = f"{stack.secretary}/analyze-request"
        await get(url, {"channel": "email", "username": "PetrovaElena@example.com", "request": "Отчёт по платежам"})
        await get(url, {"channel": "direct", "username": "nobody", "request": "Отчёт по платежам"})
        await get(url, {"channel": "direct", "username": "smirnovanton", "request": "Отчёт", "department": "Казначейство", "position": "директор"})
        payloads = [json.loads(r["body"]["messages"][-1]["content"].split("\n", 1)[1]) for r in openai_server.requests]
        assert (payloads[0]["username"], payloads[0]["department"], payloads[0]["position"]) == (
            "petrovaelena", "Департамент платёжных продуктов", "ведущий системный аналитик"), "found by e-mail"
        assert (payloads[1]["department"], payloads[1]["position"]) == ("не указано", "не указана"), "strangers get neutral defaults"
        assert (payloads[2]["department"], payloads[2]["position"]) == ("Казначейство", "директор"), "the request overrides the directory"
        status, user, _ = await get(f"{stack.secretary}/users/smirnov_anton")
        assert status == 200 and user["username"] == "smirnovanton" and user["email"] == "smirnovanton@example.com"
    finally:
        await stack.stop()


async def test_clarification_thread_reaches_the_guesser(database_url, openai_server):
    replies = iter([
        {"is_enough": False, "response": "Какие операции?"},
        {"is_enough": True, "response": "Авторизации кошельков"},
        {"is_enough": True, "response": "Куб авторизаций", "action": "создать jira-task"},
    ])
    openai_server.default = lambda body: json.dumps(next(replies), ensure_ascii=False)
    stack = await start_stack(database_url, llm={"llm_provider": "openai", "llm_base_url": openai_server.base_url})
    try:
        url = f"{stack.secretary}/analyze-request"
        sender = {"channel": "direct", "username": "smirnovanton", "verified": "true"}
        await get(url, {**sender, "request": VAGUE})
        status, final, _ = await get(url, {**sender, "request": "Авторизации"})
        assert status == 200 and final["action"] == "создать jira-task" and final["is_enough"] is True
        thread = [{"role": "user", "text": VAGUE}, {"role": "assistant", "text": "Какие операции?"}, {"role": "user", "text": "Авторизации"}]
        second_guess = json.loads(openai_server.requests[1]["body"]["messages"][-1]["content"].split("\n", 1)[1])
        assert second_guess["discussion"] == thread, "the model gets the discussion as turns, not labelled text"
        analyst_call = json.loads(openai_server.requests[2]["body"]["messages"][-1]["content"].split("\n", 1)[1])
        assert analyst_call["context"] == "Авторизации кошельков" and analyst_call["discussion"] == thread
        assert final["discussion"] == [*thread, {"role": "assistant", "text": "Куб авторизаций"}]
        assert final["person"]["username"] == "smirnovanton" and final["person"]["known"] is True
    finally:
        await stack.stop()


async def test_a_message_id_belongs_to_its_sender(stack):
    """Item 1 of the trust review: another sender's id neither reads nor takes over a message."""
    url = f"{stack.secretary}/analyze-request"
    alice = {"channel": "tg", "username": "100003", "verified": "true"}
    mallory = {"channel": "tg", "username": "666", "verified": "true"}
    status, hers, _ = await get(url, {**alice, "request": "Нужен срез авторизаций кошельков за месяц", "message_id": "42:7"})
    assert status == 200 and hers["is_enough"] is True
    status, stolen, _ = await get(url, {**mallory, "request": "Что угодно", "message_id": "42:7"})
    assert status == 200 and stolen["turn_id"] != hers["turn_id"] and stolen["repeated"] is False
    assert "авториз" not in stolen["response"].lower() and stolen["request"] == "Что угодно", "nothing of hers is shown"

    # Pre-sending the next guessable id does not hijack her next message either.
    await get(url, {**mallory, "request": "Помогите", "message_id": "42:8"})
    status, next_one, _ = await get(url, {**alice, "request": "Нужна выгрузка пополнений кошельков за неделю", "message_id": "42:8"})
    assert status == 200 and next_one["repeated"] is False and next_one["person"]["username"] == "ivanovsergey"
    assert next_one["request"] == "Нужна выгрузка пополнений кошельков за неделю", "her message is stored and answered"


async def test_threads_keep_discussions_apart_and_can_be_closed(stack):
    url = f"{stack.secretary}/analyze-request"
    sender = {"channel": "email", "username": "smirnovanton@example.com", "verified": "true"}
    _, first, _ = await get(url, {**sender, "request": VAGUE, "thread": "<root-1@example.com>"})
    assert first["action"] == "уточнить"
    _, other, _ = await get(url, {**sender, "request": "Новая тема: отчёт по платежам", "thread": "<root-2@example.com>"})
    assert other["conversation_id"] != first["conversation_id"], "a new e-mail thread is a new conversation"
    assert VAGUE not in other["response"] and other["request"] != VAGUE
    _, reply, _ = await get(url, {**sender, "request": ANSWER, "thread": "<root-1@example.com>"})
    assert reply["conversation_id"] == first["conversation_id"] and reply["is_enough"] is True

    _, again, _ = await get(url, {**sender, "request": VAGUE, "thread": "<root-3@example.com>"})
    status, closed, _ = await post(f"{stack.secretary}/conversations/close", json={
        "channel": "email", "username": "smirnovanton@example.com", "thread": "<root-3@example.com>"})
    assert status == 200 and closed == {"closed": 1}
    _, fresh, _ = await get(url, {**sender, "request": ANSWER, "thread": "<root-3@example.com>"})
    assert fresh["conversation_id"] != again["conversation_id"], "after closing, the thread starts afresh"


async def test_an_answer_that_picks_an_offered_option_is_understood(stack):
    url = f"{stack.secretary}/analyze-request"
    sender = {"channel": "direct", "username": "smirnovanton", "thread": "tab-1"}
    _, question, _ = await get(url, {**sender, "request": VAGUE})
    assert question["action"] == "уточнить" and "все операции" in question["question"]
    _, answer, _ = await get(url, {**sender, "request": "все операции"})
    assert answer["is_enough"] is True and answer["conversation_id"] == question["conversation_id"]
