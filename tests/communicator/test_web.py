"""The web chat: who the visitor is, its API and limits, and a conversation in a real headless Chromium."""

from __future__ import annotations

import asyncio
import json
import re

import aiohttp
import pytest
from pydantic import ValidationError
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from ai_communicator.settings import CommunicatorSettings
from support.browser import Browser
from support.client import get, is_error_response, post
from support.communicator import DEPARTMENTS, metric, record_inbound, start_communicator
from support.relay import Relay
from support.stack import start_stack

VAGUE = "Я хочу получать аналитику о операциях наших кошельков"
ANSWER = "Меня интересуют операции авторизации за последний месяц"
# The communicator behind a signing-in proxy on this machine (oauth2-proxy sets this header).
BEHIND_PROXY = {"web_trusted_proxies": "127.0.0.1"}
ANTON = {"X-Auth-Request-Email": "smirnovanton@example.com"}
THREAD = "thread-0001"


def browser_session() -> aiohttp.ClientSession:
    """A client keeping its cookies as a browser does (unsafe=True: the jar takes cookies from an IP address)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def send(session: aiohttp.ClientSession, url: str, body: dict, headers: dict | None = None) -> tuple[int, dict, dict]:
    async with session.post(url, json=body, headers=headers) as response:
        return response.status, await response.json(content_type=None), response.headers


async def test_chat_api_validates_and_answers(core):
    communicator = await start_communicator(core.secretary, **BEHIND_PROXY)
    try:
        for body, field in (({"thread": THREAD}, "message"), ({"message": "   "}, "message"),
                            ({"message": "x", "message_id": "bad id!"}, "message_id"),
                            ({"message": "x", "thread": "short"}, "thread"), ({"message": "x", "thread": "a/b" * 5}, "thread")):
            status, error, _ = await post(f"{communicator.url}/api/chat", json=body, headers=ANTON)
            assert status == 400 and is_error_response(error, 400) and field in error["message"], error
        status, error, _ = await post(f"{communicator.url}/api/chat", data="not json", headers={"Content-Type": "application/json"})
        assert status == 400 and is_error_response(error, 400)

        chat = f"{communicator.url}/api/chat"
        status, first, _ = await post(chat, json={"message": VAGUE, "message_id": "m-1", "thread": THREAD}, headers=ANTON)
        assert status == 200 and first["action"] == "уточнить" and first["reply"] == first["question"]
        # The same message again (a page that retried): the same answer, not a second turn.
        _, again, _ = await post(chat, json={"message": VAGUE, "message_id": "m-1", "thread": THREAD}, headers=ANTON)
        assert again["turn_id"] == first["turn_id"] and again["reply"] == first["reply"]
        _, second, _ = await post(chat, json={"message": ANSWER, "message_id": "m-2", "thread": THREAD}, headers=ANTON)
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
        body = {"message": "Нужна выгрузка платежей за октябрь по дням", "message_id": "m-away"}
        async with browser_session() as browser:
            status, error, _ = await send(browser, f"{communicator.url}/api/chat", body)
            assert status == 503 and is_error_response(error, 503) and "ещё раз" in error["message"]
            await core.services["secretary"].start()
            status, answer, _ = await send(browser, f"{communicator.url}/api/chat", body)
        assert status == 200 and "платеж" in answer["reply"].lower()
    finally:
        await communicator.stop()


async def test_a_user_over_the_secretarys_rate_limit_is_told_when_to_send_again(core):
    # The web chat's own limit off: this is about the secretary's.
    communicator = await start_communicator(core.secretary, web_rate_per_minute=0, **BEHIND_PROXY)
    try:
        statuses = []
        for n in range(12):  # the secretary's burst is 10 per user
            body = {"message": f"Сколько платежей прошло за день номер {n}?", "message_id": f"rl-{n}"}
            status, answer, headers = await post(f"{communicator.url}/api/chat", json=body, headers={"X-Auth-Request-Email": "chatty.user@example.com"})
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
                                            departments_file=str(departments), **smtp, **BEHIND_PROXY)
    try:
        text = "Сделай рассылку всему департаменту: витрина платежей обновлена за октябрь"
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"message": text}, headers=ANTON)
        assert status == 200 and answer["action"] == "написать в рассылку департамента"
        [note] = await mail.smtp.wait_for("client-service@mw.test")
        assert note["Subject"].startswith("[MultyWorkemon]") and "витрина платежей обновлена" in note.get_content()
        assert answer["action_result"]["status"] == "done" and "client-service@mw.test" in answer["reply"]

        # Jira is not configured: the user hears so, the turn records it, nothing loops.
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"message": "Заведи задачу в jira: доработать витрину авторизаций кошельков"}, headers=ANTON)
        assert status == 200 and answer["action_result"]["status"] == "failed"
        assert "Jira не подключена" in answer["reply"]
        assert await metric(communicator.url, "mw_actions_total", action="создать jira-task", outcome="failed") == 1
    finally:
        await communicator.stop()


async def test_with_a_service_token_the_communicator_still_records_what_it_did(database_url):
    token = "service-token-for-tests"
    core = await start_stack(database_url, common={"service_token": token})
    communicator = await start_communicator(core.secretary, service_token=token, **BEHIND_PROXY)
    try:
        # The page needs no token; the communicator sends it on to the secretary's operator endpoints.
        status, answer, _ = await post(f"{communicator.url}/api/chat", json={"message": VAGUE}, headers=ANTON)
        assert status == 200 and answer["action"] == "уточнить"
        status, _, _ = await get(f"{core.secretary}/conversations/{answer['conversation_id']}")
        assert status == 401
        _, thread, _ = await get(f"{core.secretary}/conversations/{answer['conversation_id']}", headers={"X-Service-Token": token})
        assert [r["action"] for r in thread["turns"][0]["action_results"]] == ["уточнить"]
    finally:
        await communicator.stop()
        await core.stop()


def test_the_identity_mode_is_told_and_proxies_are_checked_at_start():
    assert CommunicatorSettings().web_identity_mode.startswith("anonymous")
    mode = CommunicatorSettings(web_trusted_proxies="10.0.0.0/8, 192.0.2.7").web_identity_mode
    assert mode.startswith("signed in") and "X-Auth-Request-Email" in mode and "10.0.0.0/8" in mode
    with pytest.raises(ValidationError):
        CommunicatorSettings(web_trusted_proxies="10.0.0.300")


async def test_the_visitor_is_who_a_trusted_proxy_says_else_anonymous(core):
    """Issue 10.3: typing a name makes nobody that person; only a trusted proxy's header does."""
    signed = await start_communicator(core.secretary, **BEHIND_PROXY)
    elsewhere = await start_communicator(core.secretary, web_trusted_proxies="10.0.0.0/8, fd00::/8")
    plain = await start_communicator(core.secretary)
    try:
        seen = {c.url: record_inbound(c) for c in (signed, elsewhere, plain)}
        # `username` is what the page used to send: ignored now.
        body = {"username": "smirnovanton", "message": "Нужна выгрузка платежей за октябрь по дням"}
        status, _, _ = await post(f"{signed.url}/api/chat", json=body, headers=ANTON)
        [inbound] = seen[signed.url]
        assert status == 200 and (inbound.username, inbound.verified) == ("smirnovanton@example.com", True)
        _, me, _ = await get(f"{signed.url}/api/me", headers=ANTON)
        assert me == {"mode": "signed-in", "username": "smirnovanton@example.com"}

        # The header from a peer that is not a trusted proxy, or with no proxy at all: ignored.
        for communicator in (elsewhere, plain):
            async with browser_session() as browser:
                status, answer, headers = await send(browser, f"{communicator.url}/api/chat", body, ANTON)
                again, _, _ = await send(browser, f"{communicator.url}/api/chat", {"message": "А за сентябрь?"}, ANTON)
            first, second = seen[communicator.url]
            assert status == again == 200 and re.fullmatch(r"anon:[0-9a-f]{32}", first.username), first.username
            assert not first.verified and second.username == first.username, "one browser, one anonymous identity"
            cookie = headers["Set-Cookie"]
            assert f"mw_visitor={first.username[5:]}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert "Secure" not in cookie and first.username[5:] not in json.dumps(answer), "scripts never see the anonymous id"
        async with browser_session() as other:
            await send(other, f"{plain.url}/api/chat", body)
        assert seen[plain.url][-1].username not in (seen[plain.url][0].username, "smirnovanton"), "another browser is someone else"
        # The anonymous id is the visitor's secret: only in the HttpOnly cookie, never in what scripts read.
        status, me, headers = await get(f"{plain.url}/api/me")
        assert status == 200 and me == {"mode": "anonymous", "username": None} and "HttpOnly" in headers["Set-Cookie"]
        # Over https as a trusted proxy says (X-Forwarded-Proto), the cookie is Secure; anyone else's word is ignored.
        _, _, headers = await get(f"{signed.url}/api/me", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" in headers["Set-Cookie"]
        _, _, headers = await get(f"{elsewhere.url}/api/me", headers={"X-Forwarded-Proto": "https"})
        assert "Secure" not in headers["Set-Cookie"]

        _, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "direct"})
        assert page["total"] == 1, "only the signed-in message is Anton's"
    finally:
        for communicator in (signed, elsewhere, plain):
            await communicator.stop()


async def test_the_web_chat_limits_each_client(core):
    """Issue 10.7: per person, and per address for anonymous visitors (a new cookie is free)."""
    limits = {"web_rate_per_minute": 1, "web_rate_burst": 2, "web_peer_rate_per_minute": 1, "web_peer_rate_burst": 3}
    communicator = await start_communicator(core.secretary, **limits, **BEHIND_PROXY)
    chat = f"{communicator.url}/api/chat"
    try:
        def person(email: str) -> dict:
            return {"X-Auth-Request-Email": email}

        statuses = [(await post(chat, json={"message": f"Сколько платежей за день {n}?"}, headers=person("a@example.com")))[0] for n in range(2)]
        status, error, headers = await post(chat, json={"message": "Сколько платежей за день 3?"}, headers=person("a@example.com"))
        assert statuses == [200, 200] and status == 429 and is_error_response(error, 429), (statuses, error)
        assert "ещё раз через" in error["message"] and int(headers["Retry-After"]) >= 1
        status, _, _ = await post(chat, json={"message": "Сколько платежей за день 1?"}, headers=person("b@example.com"))
        assert status == 200, "another person has a quota of their own"

        async with browser_session() as browser:
            anonymous = [(await send(browser, chat, {"message": f"Сколько авторизаций за день {n}?"}))[0] for n in range(3)]
        assert anonymous == [200, 200, 429], anonymous
        async with browser_session() as fresh:
            status, error, headers = await send(fresh, chat, {"message": "Сколько авторизаций за день 4?"})
        assert status == 429 and is_error_response(error, 429) and int(headers["Retry-After"]) >= 1, "a new cookie does not reset the address's quota"
        # Behind the trusted proxy the client's address is the one the proxy adds to X-Forwarded-For.
        status, _, _ = await post(chat, json={"message": "Сколько авторизаций за день 5?"}, headers={"X-Forwarded-For": "198.51.100.7"})
        assert status == 200
    finally:
        await communicator.stop()


async def test_a_carriage_return_in_the_first_line_is_never_a_500(core, mail, departments_file):
    """Issue 10.11: the mailing puts the first line into a Subject header."""
    smtp = {k: v for k, v in mail.settings().items() if not k.startswith("imap_")}
    communicator = await start_communicator(core.secretary, smtp_user=mail.SERVICE, smtp_password=mail.PASSWORD,
                                            departments_file=departments_file, **smtp, **BEHIND_PROXY)
    try:
        start = "Сделай рассылку всему департаменту: витрина платежей обновлена"
        mailed = 0
        for n, text in enumerate((f"{start}\rBcc: evil@example.com", f"{start}\r\nBcc: evil@example.com",
                                  f"{start}\n\rSubject: подмена", f"\r{start}", f"{start}\r")):
            # `username` for the page as it was, whose users were who they typed.
            status, answer, _ = await post(f"{communicator.url}/api/chat", json={"username": "smirnovanton", "message": text, "message_id": f"cr-{n}"}, headers=ANTON)
            assert status == 200 or (400 <= status < 500 and is_error_response(answer, status)), (repr(text), status, answer)
            mailed += status == 200 and (answer["action_result"] or {}).get("status") == "done"
        assert mailed, "the mailing itself still goes out"
        notes = await mail.smtp.wait_for("client-service@mw.test", mailed)
        assert all("\r" not in note["Subject"] and "\n" not in note["Subject"] for note in notes)
        assert mail.smtp.to("evil@example.com") == []
    finally:
        await communicator.stop()


async def test_new_conversation_closes_the_thread_on_the_secretary(core):
    """Issue 12.5: "Новый разговор" closes the page's conversation on the server and starts another."""
    secretary = await Relay(core.secretary).start()
    communicator = await start_communicator(secretary.url, **BEHIND_PROXY)
    seen = record_inbound(communicator)
    chat = f"{communicator.url}/api/chat"
    try:
        status, first, _ = await post(chat, json={"message": VAGUE, "thread": THREAD}, headers={**ANTON, "X-Request-ID": "web-trace-0001"})
        assert status == 200 and first["action"] == "уточнить" and seen[-1].thread == THREAD
        # Issue 12.4: the page's request id is the message's, on every call to the secretary for it.
        assert {call.headers.get("X-Request-ID") for call in secretary.calls} == {"web-trace-0001"}

        status, fresh, _ = await post(f"{chat}/new", json={"thread": THREAD}, headers=ANTON)
        assert status == 200 and re.fullmatch(r"[A-Za-z0-9_-]{8,64}", fresh["thread"]) and fresh["thread"] != THREAD
        assert isinstance(fresh["closed"], int)
        [close] = secretary.to("/conversations/close")
        assert close.method == "POST" and close.body == {"channel": "direct", "username": "smirnovanton@example.com", "thread": THREAD}
        status, _, _ = await post(chat, json={"message": VAGUE, "thread": fresh["thread"]}, headers=ANTON)
        assert status == 200 and seen[-1].thread == fresh["thread"]

        # Nothing to close (a page that never had a conversation id): just a new one.
        status, other, _ = await post(f"{chat}/new", json={}, headers=ANTON)
        assert status == 200 and other["closed"] == 0 and len(secretary.to("/conversations/close")) == 1
        status, error, _ = await post(f"{chat}/new", json={"thread": "bad thread"}, headers=ANTON)
        assert status == 400 and is_error_response(error, 400) and "thread" in error["message"]
        # The secretary away: the page is told, and keeps its conversation to close later.
        secretary.fail = lambda call: 503 if call.path == "/conversations/close" else None
        status, error, _ = await post(f"{chat}/new", json={"thread": fresh["thread"]}, headers=ANTON)
        assert status == 503 and is_error_response(error, 503) and "ещё раз" in error["message"]
    finally:
        await communicator.stop()
        await secretary.close()


@pytest.fixture
def browser():
    running = Browser()
    yield running
    running.quit()


def in_thread(step):
    return asyncio.get_running_loop().run_in_executor(None, step)


def say(driver, text: str, replies: int) -> list[str]:
    driver.find_element(By.ID, "message").send_keys(text)
    driver.find_element(By.ID, "send").click()
    WebDriverWait(driver, 20).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#conversation li.bot")) >= replies)
    return [li.text for li in driver.find_elements(By.CSS_SELECTOR, "#conversation li")]


async def test_two_turn_clarification_and_a_new_conversation_in_a_real_browser(core, browser):
    secretary = await Relay(core.secretary).start()
    communicator = await start_communicator(secretary.url, **BEHIND_PROXY)
    # What oauth2-proxy does in front of the chat: the signed-in user's e-mail in a header of its own.
    proxy = await Relay(communicator.url, add_headers=ANTON).start()
    seen = record_inbound(communicator)
    driver = browser.driver
    try:
        await in_thread(lambda: driver.get(f"{proxy.url}/"))
        assert "MultyWorkemon" in driver.title
        assert not driver.find_elements(By.ID, "username"), "nobody types who they are"
        await in_thread(lambda: WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "who"), "Вы вошли как smirnovanton@example.com")))

        thread = await in_thread(lambda: say(driver, VAGUE, 1))
        assert thread[0] == VAGUE and "кошел" in thread[1].lower() and "уточняющий вопрос" in thread[1]
        assert driver.find_elements(By.CSS_SELECTOR, "#conversation li.bot.question")
        assert driver.find_element(By.ID, "message").get_attribute("value") == "", "the box is cleared once answered"

        thread = await in_thread(lambda: say(driver, ANSWER, 2))
        assert thread[2] == ANSWER and "авториз" in thread[3].lower()
        await in_thread(lambda: WebDriverWait(driver, 5).until(EC.element_to_be_clickable((By.ID, "send"))))
        first, second = seen
        assert first.username == second.username == "smirnovanton@example.com" and first.verified
        assert re.fullmatch(r"[A-Za-z0-9_-]{8,64}", first.thread) and second.thread == first.thread, "one conversation, one thread"
        _, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "direct"})
        assert page["total"] == 1 and page["items"][0]["turns"] == 2 and page["items"][0]["status"] == "answered"

        # "Новый разговор": the server closes this thread, the page starts afresh with the next one.
        await in_thread(lambda: driver.find_element(By.ID, "reset").click())
        await in_thread(lambda: WebDriverWait(driver, 10).until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#conversation li")))
        [close] = await secretary.wait_calls("/conversations/close")
        assert close.body == {"channel": "direct", "username": "smirnovanton@example.com", "thread": first.thread}
        await in_thread(lambda: say(driver, VAGUE, 1))
        assert seen[-1].thread not in (None, first.thread)
        # The page kept no secrets and used only its own origin: no console errors (CSP included).
        errors = browser.errors()
        assert errors == []
    finally:
        await proxy.close()
        await communicator.stop()
        await secretary.close()


async def test_an_anonymous_visitor_in_a_real_browser(core, browser):
    communicator = await start_communicator(core.secretary)
    seen = record_inbound(communicator)
    driver = browser.driver
    try:
        await in_thread(lambda: driver.get(f"{communicator.url}/"))
        await in_thread(lambda: WebDriverWait(driver, 10).until(EC.text_to_be_present_in_element((By.ID, "who"), "Анонимный режим")))
        thread = await in_thread(lambda: say(driver, "Нужна выгрузка платежей за октябрь по дням", 1))
        assert "платеж" in thread[1].lower()
        [inbound] = seen
        assert inbound.username.startswith("anon:") and not inbound.verified
        [cookie] = [c for c in driver.get_cookies() if c["name"] == "mw_visitor"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and inbound.username == f"anon:{cookie['value']}"
        assert "mw_visitor" not in driver.execute_script("return document.cookie"), "page scripts cannot read it"
        assert browser.errors() == []
    finally:
        await communicator.stop()
