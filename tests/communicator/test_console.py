"""The operator console (issue 15.1): who may enter, the conversations and one conversation in full,
taking a conversation over (the bot goes silent there) and the operator's reply on the user's channel."""

from __future__ import annotations

import asyncio

import aiohttp
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support.client import SUITE_TOKEN, get, post
from support.communicator import start_communicator
from support.relay import Relay

from communicator.test_mail import SENDER, letter
from communicator.test_telegram import ANTON, tg_settings
from communicator.test_web import browser, in_thread, say  # noqa: F401 - browser is a fixture

OPERATOR = "irina.sokolova@example.com"
AS_OPERATOR = {"X-Auth-Request-Email": OPERATOR}
CONSOLE = {"web_trusted_proxies": "127.0.0.1", "operators": f"{OPERATOR}, other.operator@example.com"}
CLEAR = "Нужна выгрузка платежей за октябрь по дням"


async def page(url: str, headers: dict[str, str], data: dict | None = None) -> tuple[int, str, aiohttp.typedefs.LooseHeaders]:
    async with aiohttp.ClientSession() as session:
        method = session.post if data is not None else session.get
        async with method(url, headers=headers, data=data, allow_redirects=False) as response:
            return response.status, await response.text(), response.headers


async def test_only_signed_in_operators_enter(core):
    communicator = await start_communicator(core.secretary, **CONSOLE)
    anonymous = await start_communicator(core.secretary, operators=OPERATOR)  # no trusted proxy: anonymous mode
    try:
        console = f"{communicator.url}/operator/"
        assert (await page(console, {}))[0] == 403
        assert (await page(console, {"X-Auth-Request-Email": "smirnovanton@example.com"}))[0] == 403, "a user, not an operator"
        assert (await page(f"{anonymous.url}/operator/", AS_OPERATOR))[0] == 403, "anonymous mode: nobody is an operator"
        status, html, headers = await page(console, AS_OPERATOR)
        assert status == 200 and "Разговоры" in html and "default-src 'self'" in headers["Content-Security-Policy"]
        assert "<script" not in html and "http" not in html.split("<body>")[1], "no script, nothing from elsewhere"
        # A form another site makes the operator's browser post is refused.
        status, _, _ = await page(f"{communicator.url}/operator/conversations/1/take", {**AS_OPERATOR, "Sec-Fetch-Site": "cross-site"}, {})
        assert status == 403
        assert (await page(f"{communicator.url}/operator/conversations/1/take", {"X-Auth-Request-Email": "x@example.com"}, {}))[0] == 403
    finally:
        await communicator.stop()
        await anonymous.stop()


async def test_take_over_a_telegram_conversation_in_a_real_browser(core, telegram, browser):
    communicator = await start_communicator(core.secretary, **CONSOLE, **tg_settings(telegram))
    proxy = await Relay(communicator.url, add_headers=AS_OPERATOR).start()
    driver = browser.driver
    try:
        telegram.user_says("Я хочу получать аналитику о операциях наших кошельков", chat_id=ANTON, username="smirnov_anton")
        await telegram.wait_sent(ANTON, 1)

        def open_the_conversation() -> str:
            driver.get(f"{proxy.url}/operator/?channel=tg")
            rows = driver.find_elements(By.CSS_SELECTOR, "tbody tr")
            assert len(rows) == 1 and "smirnovanton" in rows[0].text and "ждут ответа пользователя" in rows[0].text, rows[0].text
            link = rows[0].find_element(By.TAG_NAME, "a")
            link.send_keys(Keys.ENTER)  # the keyboard is enough
            WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.CSS_SELECTOR, ".turns .turn")))
            return driver.find_element(By.TAG_NAME, "main").text

        shown = await in_thread(open_the_conversation)
        assert "Угадыватель" in shown and "мало данных" in shown and "уточнить" in shown and "Время" in shown

        def take() -> None:
            driver.find_element(By.XPATH, "//button[text()='Взять разговор']").send_keys(Keys.ENTER)
            WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "reply-text")))

        await in_thread(take)
        # The user writes again: stored for the operator, the bot says nothing.
        telegram.user_says("Меня интересуют операции авторизации за последний месяц", chat_id=ANTON, username="smirnov_anton")
        _, listing, _ = await get(f"{core.secretary}/conversations", {"status": "operator"})
        conversation_id = listing["items"][0]["id"]
        for _ in range(100):
            _, body, _ = await get(f"{core.secretary}/conversations/{conversation_id}")
            if len(body["turns"]) == 2 and body["turns"][1]["status"] == "answered":
                break
            await asyncio.sleep(0.1)
        assert body["turns"][1]["response"] == "" and body["taken_by"] == OPERATOR
        assert len(telegram.to(ANTON)) == 1, "silent while an operator holds the conversation"

        def reply() -> str:
            driver.refresh()
            box = WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.ID, "reply-text")))
            box.send_keys("Здравствуйте! Выгрузку авторизаций за месяц пришлю сегодня до 18:00. Ирина")
            box.find_element(By.XPATH, "following-sibling::button").send_keys(Keys.ENTER)
            WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "p[role=status]"), "Ответ отправлен"))
            return driver.find_element(By.TAG_NAME, "main").text

        shown = await in_thread(reply)
        sent = await telegram.wait_sent(ANTON, 2)
        assert sent[1].startswith("Здравствуйте! Выгрузку авторизаций") and "Оператор irina.sokolova@example.com" in shown
        _, body, _ = await get(f"{core.secretary}/conversations/{conversation_id}")
        operator_turn = body["turns"][2]
        assert operator_turn["operator"] == OPERATOR and operator_turn["request"] == ""
        assert [(r["action"], r["status"]) for r in operator_turn["action_results"]] == [("ответить сообщением", "done")]

        # Handed back: the bot answers again.
        await in_thread(lambda: driver.find_element(By.XPATH, "//button[text()='Вернуть боту']").send_keys(Keys.ENTER))
        await in_thread(lambda: WebDriverWait(driver, 10).until(EC.presence_of_element_located((By.XPATH, "//button[text()='Взять разговор']"))))
        telegram.user_says(CLEAR, chat_id=ANTON, username="smirnov_anton")
        sent = await telegram.wait_sent(ANTON, 3)
        assert "платеж" in sent[2].lower()
        assert browser.errors() == []
    except Exception:
        browser.screenshot("console-failure.png")
        raise
    finally:
        await proxy.close()
        await communicator.stop()


async def test_operator_replies_reach_the_web_chat_and_the_mail_thread(core, mail):
    communicator = await start_communicator(core.secretary, **CONSOLE, **mail.settings())
    chat = f"{communicator.url}/api/chat"
    user = {"X-Auth-Request-Email": "smirnovanton@example.com"}
    try:
        # The web chat: the page's next poll shows what the operator wrote.
        _, first, _ = await post(chat, json={"message": CLEAR, "thread": "thread-operator-1"}, headers=user)
        conversation = first["conversation_id"]
        status, _, headers = await page(f"{communicator.url}/operator/conversations/{conversation}/take", AS_OPERATOR, {})
        assert status == 303 and headers["Location"] == f"/operator/conversations/{conversation}"
        _, silent, _ = await post(chat, json={"message": "Есть новости?", "thread": "thread-operator-1"}, headers=user)
        assert silent["silent"] is True and silent["reply"] == ""
        # Another operator cannot write in a conversation they do not hold.
        status, _, _ = await page(f"{communicator.url}/operator/conversations/{conversation}/reply",
                                  {"X-Auth-Request-Email": "other.operator@example.com"}, {"text": "Я тоже тут"})
        assert status == 409
        status, _, headers = await page(f"{communicator.url}/operator/conversations/{conversation}/reply", AS_OPERATOR, {"text": "Да: выгрузка готова"})
        assert status == 303 and headers["Location"].endswith("done=stored")
        status, updates, _ = await get(f"{chat}/updates", {"thread": "thread-operator-1"}, headers=user)
        assert status == 200 and [u["text"] for u in updates["items"]] == ["Да: выгрузка готова"]
        _, later, _ = await get(f"{chat}/updates", {"thread": "thread-operator-1", "after": updates["items"][0]["turn_id"]}, headers=user)
        assert later == {"items": []}
        _, others, _ = await get(f"{chat}/updates", {"thread": "thread-operator-1"}, headers={"X-Auth-Request-Email": "petrovaelena@example.com"})
        assert others == {"items": []}, "nobody else sees it"

        # E-mail: a reply in the thread of the user's letter.
        original = letter(CLEAR, subject="Выгрузка платежей")
        await mail.dovecot.deliver(mail.SERVICE, original)
        await mail.smtp.wait_for(SENDER)
        _, listing, _ = await get(f"{core.secretary}/conversations", {"channel": "email"})
        mail_conversation = listing["items"][0]["id"]
        await page(f"{communicator.url}/operator/conversations/{mail_conversation}/take", AS_OPERATOR, {})
        status, _, headers = await page(f"{communicator.url}/operator/conversations/{mail_conversation}/reply", AS_OPERATOR,
                                        {"text": "Добрый день! Отвечаю лично."})
        assert status == 303 and headers["Location"].endswith("done=sent")
        _, letter_back = await mail.smtp.wait_for(SENDER, 2)
        assert letter_back["In-Reply-To"] == original["Message-ID"] and original["Message-ID"] in letter_back["References"]
        assert "Добрый день! Отвечаю лично." in letter_back.get_content() and "Auto-Submitted" not in letter_back
        status, html, _ = await page(f"{communicator.url}/operator/?status=operator", AS_OPERATOR)
        assert status == 200 and f"№{conversation}" in html and f"№{mail_conversation}" in html
    finally:
        await communicator.stop()


async def test_the_web_chat_page_shows_the_operators_reply_by_itself(core, browser):
    communicator = await start_communicator(core.secretary, **CONSOLE)
    user = await Relay(communicator.url, add_headers={"X-Auth-Request-Email": "smirnovanton@example.com"}).start()
    driver = browser.driver
    try:
        await in_thread(lambda: driver.get(f"{user.url}/"))
        await in_thread(lambda: say(driver, CLEAR, 1))
        _, listing, _ = await get(f"{core.secretary}/conversations", {"channel": "direct"})
        conversation = listing["items"][0]["id"]
        await page(f"{communicator.url}/operator/conversations/{conversation}/take", AS_OPERATOR, {})

        def ask_again() -> str:
            driver.find_element(By.ID, "message").send_keys("Есть новости?")
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "status"), "передано сотруднику"))
            return driver.find_element(By.ID, "status").text

        assert "сотрудник" in await in_thread(ask_again)
        await page(f"{communicator.url}/operator/conversations/{conversation}/reply", AS_OPERATOR, {"text": "Выгрузка готова, лежит в общей папке"})

        def operator_bubble() -> str:
            WebDriverWait(driver, 15).until(EC.presence_of_element_located((By.CSS_SELECTOR, "#conversation li.bot.operator")))
            return driver.find_element(By.CSS_SELECTOR, "#conversation li.bot.operator").text

        shown = await in_thread(operator_bubble)
        assert "Выгрузка готова" in shown and "ответ сотрудника поддержки" in shown
        assert browser.errors() == []
    except Exception:
        browser.screenshot("console-web-chat-failure.png")
        raise
    finally:
        await user.close()
        await communicator.stop()


async def test_conversations_are_filtered_and_paginated_newest_first(core):
    communicator = await start_communicator(core.secretary, **CONSOLE)
    try:
        async with aiohttp.ClientSession(headers={"X-Service-Token": SUITE_TOKEN}) as session:
            for n in range(22):
                # Many people (the secretary limits each one's rate): strangers on Telegram, web users.
                body = {"channel": "direct" if n % 2 else "tg", "username": f"user{n}@example.com" if n % 2 else str(900000 + n),
                        "request": f"Нужна выгрузка платежей за октябрь по дням, часть {n}", "thread": f"paging-{n:04d}", "verified": True}
                async with session.post(f"{core.secretary}/analyze-request", json=body) as response:
                    assert response.status == 200
        status, first, _ = await page(f"{communicator.url}/operator/", AS_OPERATOR)
        assert status == 200 and "Всего: 22, страница 1." in first and first.count("<tr><td><a href=") == 20
        assert first.index("часть 21") < first.index("часть 20"), "newest first"
        assert 'rel="next" href="/operator/?status=&amp;channel=&amp;person=&amp;page=2"' in first
        _, second, _ = await page(f"{communicator.url}/operator/?page=2", AS_OPERATOR)
        assert second.count("<tr><td><a href=") == 2 and 'rel="prev"' in second and 'rel="next"' not in second
        _, telegram_only, _ = await page(f"{communicator.url}/operator/?channel=tg", AS_OPERATOR)
        assert "Всего: 11," in telegram_only and "user1@example.com" not in telegram_only
        _, one_person, _ = await page(f"{communicator.url}/operator/?person=tg:900004", AS_OPERATOR)
        assert "Всего: 1," in one_person and "часть 4<" in one_person
        _, hostile, _ = await page(f"{communicator.url}/operator/?person=<script>alert(1)</script>&status=bogus&page=x", AS_OPERATOR)
        assert "<script>" not in hostile and "&lt;script&gt;" in hostile and "Всего: 0," in hostile
    finally:
        await communicator.stop()
