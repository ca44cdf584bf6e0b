"""Feedback on answers (issue 15.2): 👍/👎 in the web chat, an inline keyboard in Telegram, "1"/"2" by
mail; stored once per turn and changeable, only by the person the answer was given to, and counted."""

from __future__ import annotations

from email.utils import make_msgid

import pytest

from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from ai_communicator.channels.telegram import NOT_RATED, RATED
from support.client import get, is_error_response, post, put
from support.communicator import metric, start_communicator
from support.relay import Relay
from support.stack import KNOWLEDGE, start_stack

from communicator.test_mail import SENDER, letter, wait_flag
from communicator.test_telegram import ANTON, tg_settings
from communicator.test_web import browser, in_thread, say  # noqa: F401 - browser is a fixture

BEHIND_PROXY = {"web_trusted_proxies": "127.0.0.1"}
ANTON_WEB = {"X-Auth-Request-Email": "smirnovanton@example.com"}
ELENA_WEB = {"X-Auth-Request-Email": "petrovaelena@example.com"}
CLEAR = "Нужна выгрузка платежей за октябрь по дням"


async def turn(secretary: str, username: str, channel: str) -> dict:
    _, page, _ = await get(f"{secretary}/conversations", {"username": username, "channel": channel})
    _, conversation, _ = await get(f"{secretary}/conversations/{page['items'][0]['id']}")
    return conversation["turns"][-1]


async def test_web_chat_feedback_is_the_senders_own_and_changeable(core):
    communicator = await start_communicator(core.secretary, **BEHIND_PROXY)
    chat = f"{communicator.url}/api/chat"
    try:
        _, question, _ = await post(chat, json={"message": "Я хочу получать аналитику о операциях наших кошельков"}, headers=ANTON_WEB)
        assert question["action"] == "уточнить" and question["rated_turn"] is None, "a question is not rated"
        _, answer, _ = await post(chat, json={"message": CLEAR, "thread": "thread-feedback-2"}, headers=ANTON_WEB)
        turn_id = answer["rated_turn"]
        assert turn_id == answer["turn_id"]

        status, result, _ = await put(f"{chat}/feedback", {"turn_id": turn_id, "rating": "up"}, headers=ANTON_WEB)
        assert status == 200 and result == {"turn_id": turn_id, "rating": "up", "changed": True}
        status, result, _ = await put(f"{chat}/feedback", {"turn_id": turn_id, "rating": "up"}, headers=ANTON_WEB)
        assert status == 200 and result["changed"] is False, "the same rating twice is stored once"
        status, result, _ = await put(f"{chat}/feedback", {"turn_id": turn_id, "rating": "down"}, headers=ANTON_WEB)
        assert status == 200 and result["changed"] is True

        # Another person, an anonymous visitor, a turn that does not exist: all the same 404.
        for headers in (ELENA_WEB, {}):
            status, error, _ = await put(f"{chat}/feedback", {"turn_id": turn_id, "rating": "up"}, headers=headers)
            assert status == 404 and is_error_response(error, 404), error
        status, error, _ = await put(f"{chat}/feedback", {"turn_id": 2**63 - 1, "rating": "up"}, headers=ANTON_WEB)
        assert status == 404 and is_error_response(error, 404)
        status, error, _ = await put(f"{chat}/feedback", {"turn_id": turn_id, "rating": "meh"}, headers=ANTON_WEB)
        assert status == 400 and "rating" in error["message"]

        stored = await turn(core.secretary, "smirnovanton", "direct")
        assert stored["id"] == turn_id and stored["feedback"] == "down" and stored["feedback_at"]
        assert await metric(core.secretary, "mw_feedback_total", channel="direct", rating="up") == 1
        assert await metric(core.secretary, "mw_feedback_total", channel="direct", rating="down") == 1
        # The secretary's endpoint is for services only.
        status, error, _ = await put(f"{core.secretary}/feedback", {"channel": "direct", "username": "x", "rating": "up", "turn_id": 1}, headers={})
        assert status == 401 and is_error_response(error, 401)
    finally:
        await communicator.stop()


async def test_telegram_inline_keyboard_rates_the_answer_for_the_user_who_pressed(core, telegram):
    communicator = await start_communicator(core.secretary, **tg_settings(telegram))
    try:
        telegram.user_says(CLEAR, chat_id=ANTON, username="smirnov_anton")
        await telegram.wait_sent(ANTON)
        [answer] = [m for m in telegram.sent if m["chat_id"] == ANTON]
        buttons = answer["reply_markup"]["inline_keyboard"][0]
        stored = await turn(core.secretary, "smirnovanton", "tg")
        assert [b["callback_data"] for b in buttons] == [f"fb:{stored['id']}:up", f"fb:{stored['id']}:down"]

        presses = [
            telegram.user_presses(answer, f"fb:{stored['id']}:down", user_id=ANTON, username="smirnov_anton"),
            telegram.user_presses(answer, f"fb:{stored['id']}:up", user_id=ANTON, username="smirnov_anton"),
            # Someone else pressing a button of a forwarded answer changes nothing.
            telegram.user_presses(answer, f"fb:{stored['id']}:down", user_id=100003),
            telegram.user_presses(answer, "fb:0:up", user_id=ANTON),
        ]
        told = {a["id"]: a["text"] for a in await telegram.wait_callback_answers(4)}
        assert [told[f"cq{update_id}"] for update_id in presses] == [RATED, RATED, NOT_RATED, NOT_RATED]
        assert (await turn(core.secretary, "smirnovanton", "tg"))["feedback"] == "up"
        assert await metric(core.secretary, "mw_feedback_total", channel="tg", rating="up") == 1
        assert await metric(core.secretary, "mw_feedback_total", channel="tg", rating="down") == 1
    finally:
        await communicator.stop()


async def test_mail_reply_with_a_digit_is_a_rating_not_a_request(core, mail):
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        original = letter(CLEAR, subject="Выгрузка платежей")
        await mail.dovecot.deliver(mail.SERVICE, original)
        [reply] = await mail.smtp.wait_for(SENDER)
        assert "Ответьте на это письмо одной цифрой: 1 — да, 2 — нет." in reply.get_content()

        rating = letter("1\n\n-- \nАнтон", subject="Re: Выгрузка платежей", In_Reply_To=reply["Message-ID"],
                        References=f"{original['Message-ID']} {reply['Message-ID']}")
        await mail.dovecot.deliver(mail.SERVICE, rating)
        assert "\\Seen" in await wait_flag(mail, rating["Message-ID"], "\\Seen")
        stored = await turn(core.secretary, "smirnovanton", "email")
        assert stored["feedback"] == "up" and stored["message_id"] == original["Message-ID"], "no new turn for the digit"

        # A "2" in a thread that is not one of our answers to this sender is an ordinary request.
        stray = letter("2", subject="Re: что-то", In_Reply_To=make_msgid(domain="elsewhere.test"))
        await mail.dovecot.deliver(mail.SERVICE, stray)
        await mail.smtp.wait_for(SENDER, 2)
        assert (await turn(core.secretary, "smirnovanton", "email"))["request"] == "2"
        _, first, _ = await get(f"{core.secretary}/conversations/{stored['conversation_id']}")
        assert [t["feedback"] for t in first["turns"]] == ["up"]
        assert await metric(core.secretary, "mw_feedback_total", channel="email", rating="up") == 1
    finally:
        await communicator.stop()


@pytest.fixture
async def core_with_knowledge(database_url):
    running = await start_stack(database_url, analyst_settings={"knowledge_dir": str(KNOWLEDGE)})
    yield running
    await running.stop()


async def test_thumbs_under_an_answer_in_a_real_browser_by_keyboard(core_with_knowledge, browser):
    core = core_with_knowledge
    communicator = await start_communicator(core.secretary, **BEHIND_PROXY)
    proxy = await Relay(communicator.url, add_headers=ANTON_WEB).start()
    driver = browser.driver
    try:
        await in_thread(lambda: driver.get(f"{proxy.url}/"))
        texts = await in_thread(lambda: say(driver, "Нужна выгрузка авторизаций кошельков за октябрь по статусам", 1))
        bubble = texts[1]
        assert bubble.count("Источники") == 0, "sources are the links under the text, not a second list in it"
        links = driver.find_elements(By.CSS_SELECTOR, "#conversation li.bot .sources a")
        assert links and links[0].text.startswith("[1] ")

        def press_up_by_keyboard():
            up = driver.find_element(By.CSS_SELECTOR, "#conversation li.bot button.rate.up")
            driver.execute_script("arguments[0].focus()", up)
            driver.switch_to.active_element.send_keys(Keys.ENTER)
            WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "status"), "Спасибо за оценку"))
            return driver.find_element(By.CSS_SELECTOR, "#conversation li.bot button.rate.up").get_attribute("aria-pressed")

        assert await in_thread(press_up_by_keyboard) == "true"
        assert (await turn(core.secretary, "smirnovanton", "direct"))["feedback"] == "up"
        assert browser.errors() == []
    except Exception:
        browser.screenshot("feedback-failure.png")
        raise
    finally:
        await proxy.close()
        await communicator.stop()
