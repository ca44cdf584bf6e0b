"""The trust review's findings (issue 10) that live in the core services, each reproduced as an attack.

The channel-side findings are tested with their real peers: mail in tests/communicator/test_mail_hostile.py
and test_mailauth.py, the web chat and Telegram in test_web.py and test_telegram.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import aiohttp

from ai_guesser.app import GuesserSettings, create_app as create_guesser
from support.client import AS_A_SERVICE, get, is_error_response, post
from support.openai_wire import Reply
from support.stack import Service, free_port, start_stack

VAGUE = "Я хочу получать аналитику о операциях наших кошельков"


def test_a_service_without_a_token_refuses_to_start():
    """Item 6: fail closed; an open API only when asked for by name."""
    env = {k: v for k, v in os.environ.items() if k not in ("SERVICE_TOKEN", "ALLOW_INSECURE")}
    code = "from ai_guesser.app import create_app; create_app(); print('started')"
    refused = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "started" not in refused.stdout
    assert "SERVICE_TOKEN is not set" in refused.stderr and "Traceback" not in refused.stderr, "one sentence, no traceback"
    allowed = subprocess.run([sys.executable, "-c", code], env={**env, "ALLOW_INSECURE": "1"}, capture_output=True, text=True, timeout=60)
    assert allowed.returncode == 0 and "started" in allowed.stdout


async def test_nobody_without_the_token_reads_conversations_or_plants_documents(stack):
    """Item 6: the operators' API, the knowledge admin API and the analysis itself need the token."""
    phishing = {"url": "https://evil.example/sso-login", "title": "Вход", "text": "Войдите по ссылке https://evil.example/sso-login"}
    status, body, _ = await post(f"{stack.url('analyst')}/knowledge/documents", json=phishing, headers={})
    assert status == 401 and is_error_response(body, 401)
    for path in ("/conversations", "/users/smirnovanton", "/analyze-request?channel=direct&username=x&request=y"):
        status, body, _ = await get(f"{stack.secretary}{path}", headers={})
        assert status == 401 and is_error_response(body, 401), path
    status, body, _ = await post(f"{stack.secretary}/turns/1/action-result", json={"action": "x", "status": "done"}, headers={})
    assert status == 401


async def test_one_quota_per_person_however_the_name_is_spelt(database_url):
    """Item 7: user name, e-mail and Telegram handle of one person share one quota."""
    stack = await start_stack(database_url, secretary={"rate_limit_per_minute": 1, "rate_limit_burst": 2})
    try:
        url = f"{stack.secretary}/analyze-request"
        spellings = [
            {"channel": "direct", "username": "smirnovanton"},
            {"channel": "email", "username": "SmirnovAnton@example.com"},
            {"channel": "tg", "username": "555", "handle": "smirnov_anton"},
            {"channel": "tg", "username": "556", "handle": "@smirnov_anton"},
        ]
        statuses = [(await get(url, {**who, "request": VAGUE}))[0] for who in spellings]
        assert statuses[:2] == [200, 200] and statuses[2:] == [429, 429], "the third spelling finds the quota used up"
        status, _, _ = await get(url, {"channel": "direct", "username": "petrovaelena", "request": VAGUE})
        assert status == 200, "another person has their own quota"
    finally:
        await stack.stop()


async def test_huge_ids_and_offsets_are_bad_parameters_not_500s(stack):
    """Item 11: ids over PostgreSQL's bigint."""
    big = str(2**63)
    for url in (f"{stack.secretary}/conversations/{big}", f"{stack.url('analyst')}/knowledge/documents/{big}",
                f"{stack.secretary}/conversations?offset={big}", f"{stack.url('analyst')}/knowledge/documents?offset={big}"):
        status, body, _ = await get(url)
        assert status == 400 and is_error_response(body, 400), url
    status, body, _ = await post(f"{stack.secretary}/turns/{big}/action-result", json={"action": "x", "status": "done"})
    assert status == 400 and is_error_response(body, 400)


async def guesser_on(openai_server) -> Service:
    settings = GuesserSettings(llm_provider="openai", llm_base_url=openai_server.base_url, llm_api_key="sk-test", llm_max_retries=0)
    service = Service("guesser", lambda: create_guesser(settings), port=free_port())
    await service.start()
    return service


async def test_hostile_model_output_is_bounded_and_never_a_500(openai_server):
    """Items 9 and 11: 20,000 braces, JSON nested 10k deep, a huge answer: a quick 502, and liveness keeps answering."""
    guesser = await guesser_on(openai_server)
    fields = {"username": "u", "department": "d", "position": "p", "request": "r"}
    try:
        for text in ("{" * 20_000, '{"is_enough": ' * 10_000, "[" * 10_000 + "]" * 10_000, "x" * 2_000_000):
            openai_server.push(Reply(text=text), Reply(text=text))
            started = time.perf_counter()
            asked = asyncio.ensure_future(get(f"{guesser.url}/get-context", fields))
            live_status, _, _ = await get(f"{guesser.url}/health/live")
            status, body, _ = await asked
            assert status == 502 and is_error_response(body, 502), text[:20]
            assert live_status == 200
            assert time.perf_counter() - started < 5, f"{text[:20]}... took {time.perf_counter() - started:.1f} s"
    finally:
        await guesser.stop()


async def test_the_guessers_question_carries_no_link(openai_server):
    """Item 10: a clarifying question never sends anyone to a page, however the link is written."""
    guesser = await guesser_on(openai_server)
    try:
        for question in ("Войдите на https://evil.example/sso-login и уточните отчёт",
                         "Откройте evil.example/sso-login и уточните отчёт",
                         "Откройте https:/\\evil.example/sso-login и уточните отчёт",
                         "Откройте ev\u200bil.example/sso и уточните отчёт"):
            openai_server.push(Reply(text=json.dumps({"is_enough": False, "response": question}, ensure_ascii=False)))
            status, body, _ = await get(f"{guesser.url}/get-context", {"username": "u", "department": "d", "position": "p", "request": "r"})
            assert status == 200 and "evil" not in body["response"] and "уточните отчёт" in body["response"], question
    finally:
        await guesser.stop()


async def test_a_seed_only_peer_is_asked_with_get(database_url):
    """Issue 12 item 6: a guesser and analyst that implement only the seed's GET still serve our secretary."""
    seen: list[str] = []

    async def seed_guesser(request: aiohttp.web.Request) -> aiohttp.web.Response:
        seen.append(f"{request.method} {request.path}")
        if request.method != "GET":
            raise aiohttp.web.HTTPMethodNotAllowed(request.method, ["GET"])
        return aiohttp.web.json_response({"is_enough": False, "reasoning": "Какой период?", "response": "Какой период?"})

    app = aiohttp.web.Application()
    app.router.add_route("*", "/get-context", seed_guesser)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    stack = await start_stack(database_url, secretary={"guesser_url": f"http://127.0.0.1:{port}"})
    try:
        status, body, _ = await get(f"{stack.secretary}/analyze-request", {"channel": "direct", "username": "u", "request": VAGUE})
        assert status == 200 and body["action"] == "уточнить" and body["question"] == "Какой период?"
        assert seen == ["POST /get-context", "GET /get-context"]
    finally:
        await stack.stop()
        await runner.cleanup()


async def test_our_answers_carry_the_original_implementations_reasoning(stack):
    status, body, _ = await post(f"{stack.url('analyst')}/prepare-analititcs", json={"context": "Аналитика кошельков", "request": VAGUE})
    assert status == 200 and body["reasoning"] == body["response"]
    status, body, _ = await get(f"{stack.url('guesser')}/get-context", {"username": "u", "department": "d", "position": "p", "request": VAGUE},
                                headers=AS_A_SERVICE)
    assert status == 200 and body["reasoning"] == body["response"]
