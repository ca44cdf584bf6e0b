"""The web chat: its API, and a two-turn clarification in a real headless Chromium."""

from __future__ import annotations

import asyncio

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import Browser
from support.client import get, is_error_response, post
from support.communicator import DEPARTMENTS, metric, start_communicator
from support.stack import start_stack

VAGUE = "Я хочу получать аналитику о операциях наших кошельков"
ANSWER = "Меня интересуют операции авторизации за последний месяц"


async def test_chat_api_validates_and_answers(core):
    communicator = await start_communicator(core.secretary)
    try:
        for body, field in (({"message": "x"}, "username"), ({"username": "a", "message": "   "}, "message"),
                            ({"username": "a", "message": "x", "message_id": "bad id!"}, "message_id")):
            status, error, _ = await post(f"{communicator.url}/api/chat", json=body)
            assert status == 400 and is_error_response(error, 400) and field in error["message"], error
        status, error, _ = await post(f"{communicator.url}/api/chat", data="not json", headers={"Content-Type": "application/json"})
        assert status == 400 and is_error_response(error, 400)

        status, first, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": VAGUE, "message_id": "m-1"})
        assert status == 200 and first["action"] == "уточнить" and first["reply"] == first["question"]
        # The same message again (a page that retried): the same answer, not a second turn.
        _, again, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": VAGUE, "message_id": "m-1"})
        assert again["turn_id"] == first["turn_id"] and again["reply"] == first["reply"]
        _, second, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": ANSWER, "message_id": "m-2"})
        assert second["is_enough"] is True and second["action"] == "ответить сообщением"
        assert second["conversation_id"] == first["conversation_id"] and "авториз" in second["reply"].lower()
        assert await metric(communicator.url, "mw_channel_messages_processed_total", channel="direct") == 3
        assert await metric(communicator.url, "mw_channel_connected", channel="direct") == 1

        # With no mail or Telegram settings those channels are off and not needed for readiness.
        status, ready, _ = await get(f"{communicator.url}/health/ready")
        assert status == 200 and set(ready["checks"]) == set()

        # The chat reply is documented, its optional action result as a nullable reference.
        status, spec, _ = await get(f"{communicator.url}/oas/spec")
        reply = spec["components"]["schemas"]["ChatReply"]["properties"]["action_result"]
        assert status == 200 and reply == {"allOf": [{"$ref": "#/components/schemas/ActionResult"}], "nullable": True}
    finally:
        await communicator.stop()


async def test_secretary_away_gives_a_clear_error_and_the_message_can_be_sent_again(core):
    communicator = await start_communicator(core.secretary)
    try:
        await core.services["secretary"].stop()
        body = {"username": "smirnovanton", "message": "Нужна выгрузка платежей за октябрь по дням", "message_id": "m-away"}
        status, error, _ = await post(f"{communicator.url}/api/chat", json=body)
        assert status == 503 and is_error_response(error, 503) and "ещё раз" in error["message"]
        await core.services["secretary"].start()
        status, answer, _ = await post(f"{communicator.url}/api/chat", json=body)
        assert status == 200 and "платеж" in answer["reply"].lower()
    finally:
        await communicator.stop()


async def test_a_user_over_the_secretarys_rate_limit_is_told_when_to_send_again(core):
    communicator = await start_communicator(core.secretary)
    try:
        statuses = []
        for n in range(12):  # the secretary's burst is 10 per user
            body = {"username": "chatty.user", "message": f"Сколько платежей прошло за день номер {n}?", "message_id": f"rl-{n}"}
            status, answer, headers = await post(f"{communicator.url}/api/chat", json=body)
            statuses.append(status)
        assert statuses[:10] == [200] * 10 and statuses[-1] == 429, statuses
        assert is_error_response(answer, 429) and "ещё раз через" in answer["message"]
        assert int(headers["Retry-After"]) >= 1
    finally:
        await communicator.stop()


async def test_department_mailing_and_missing_settings_are_told(core, mail, tmp_path):
    departments = tmp_path / "departments.yaml"
    departments.write_text(DEPARTMENTS, encoding="utf-8")
    # SMTP only (no IMAP_USER): the mailbox is not read, but mail can be sent.
    smtp = {k: v for k, v in mail.settings().items() if not k.startswith("imap_")}
    communicator = await start_communicator(core.secretary, smtp_user=mail.SERVICE, smtp_password=mail.PASSWORD,
                                            departments_file=str(departments), **smtp)
    try:
        text = "Сделай рассылку всему департаменту: витрина платежей обновлена за октябрь"
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": text})
        assert status == 200 and answer["action"] == "написать в рассылку департамента"
        [note] = await mail.smtp.wait_for("client-service@mw.test")
        assert note["Subject"].startswith("[MultyWorkemon]") and "витрина платежей обновлена" in note.get_content()
        assert answer["action_result"]["status"] == "done" and "client-service@mw.test" in answer["reply"]

        # Jira is not configured: the user hears so, the turn records it, nothing loops.
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": "Заведи задачу в jira: доработать витрину авторизаций кошельков"})
        assert status == 200 and answer["action_result"]["status"] == "failed"
        assert "Jira не подключена" in answer["reply"]
        assert await metric(communicator.url, "mw_actions_total", action="создать jira-task", outcome="failed") == 1
    finally:
        await communicator.stop()


async def test_with_a_service_token_the_communicator_still_records_what_it_did(database_url):
    token = "service-token-for-tests"
    core = await start_stack(database_url, common={"service_token": token})
    communicator = await start_communicator(core.secretary, service_token=token)
    try:
        # The page needs no token; the communicator sends it on to the secretary's operator endpoints.
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": VAGUE})
        assert status == 200 and answer["action"] == "уточнить"
        status, _, _ = await get(f"{core.secretary}/conversations/{answer['conversation_id']}")
        assert status == 401
        _, thread, _ = await get(f"{core.secretary}/conversations/{answer['conversation_id']}", headers={"X-Service-Token": token})
        assert [r["action"] for r in thread["turns"][0]["action_results"]] == ["уточнить"]
    finally:
        await communicator.stop()
        await core.stop()


@pytest.fixture
def browser():
    running = Browser()
    yield running
    running.quit()


async def test_two_turn_clarification_in_a_real_browser(core, browser):
    communicator = await start_communicator(core.secretary)
    driver = browser.driver
    try:
        def run(step):
            return asyncio.get_running_loop().run_in_executor(None, step)

        await run(lambda: driver.get(f"{communicator.url}/"))
        assert "MultyWorkemon" in driver.title

        def say(text: str, replies: int) -> list[str]:
            driver.find_element(By.ID, "username").clear()
            driver.find_element(By.ID, "username").send_keys("smirnovanton")
            driver.find_element(By.ID, "message").send_keys(text)
            driver.find_element(By.ID, "send").click()
            WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversation li.bot")) >= replies)
            return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#conversation li")]

        thread = await run(lambda: say(VAGUE, 1))
        assert thread[0] == VAGUE and "кошел" in thread[1].lower() and "уточняющий вопрос" in thread[1]
        assert driver.find_elements(By.CSS_SELECTOR, "#conversation li.bot.question")
        assert driver.find_element(By.ID, "message").get_attribute("value") == "", "the box is cleared once answered"

        thread = await run(lambda: say(ANSWER, 2))
        assert thread[2] == ANSWER and "авториз" in thread[3].lower()
        await run(lambda: WebDriverWait(driver, 5).until(EC.element_to_be_clickable((By.ID, "send"))))
        # The page kept no secrets and used only its own origin: no console errors (CSP included).
        errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        assert errors == []

        _, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "direct"})
        assert page["total"] == 1 and page["items"][0]["turns"] == 2 and page["items"][0]["status"] == "answered"
    finally:
        await communicator.stop()
