"""Bad input gets a 4xx in the ErrorResponse shape; a failing dependency loses nothing and recovers."""

from __future__ import annotations

import asyncpg
import pytest

from support.client import AS_A_SERVICE, get, is_error_response, post


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"channel": "fax", "username": "u", "request": "r"}, "Parameter 'channel' must be one of: email, tg, direct"),
        ({"username": "u", "request": "r"}, "Parameter 'channel' is required"),
        ({"channel": "tg", "request": "r"}, "Parameter 'username' is required"),
        ({"channel": "tg", "username": "u"}, "Parameter 'request' is required"),
        ({"channel": "tg", "username": "u", "request": ""}, "Parameter 'request': String should have at least 1 character"),
    ],
)
async def test_bad_parameters_get_the_seed_error_shape(stack, params, message):
    status, body, _ = await get(f"{stack.secretary}/analyze-request", params)
    assert status == 400
    assert body == {"error": "Bad Request", "message": message, "statusCode": 400}


async def test_bad_bodies_and_unknown_routes(stack):
    url = f"{stack.secretary}/analyze-request"
    status, body, _ = await post(url, data="{not json", headers={**AS_A_SERVICE, "Content-Type": "application/json"})
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await post(url, json=["a", "list"])
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await post(url, json={"channel": "tg", "username": "u"})
    assert status == 400 and body["message"] == "Field 'request' is required"
    status, body, _ = await post(url, data="x" * 2_000_000, headers={**AS_A_SERVICE, "Content-Type": "application/json"})
    assert status == 413 and is_error_response(body, 413)
    status, body, _ = await get(f"{stack.secretary}/no-such-thing")
    assert status == 404 and is_error_response(body, 404)
    status, body, _ = await post(f"{stack.secretary}/health", json={})
    assert status == 405 and is_error_response(body, 405)
    status, body, _ = await get(f"{stack.secretary}/conversations/not-a-number")
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await get(f"{stack.secretary}/conversations/999999")
    assert status == 404 and is_error_response(body, 404)
    status, body, _ = await get(f"{stack.secretary}/conversations", {"limit": "0"})
    assert status == 400 and is_error_response(body, 400)
    status, body, _ = await get(url, {"channel": "tg", "username": "u", "request": "x" * 70_000})
    assert status == 413 and "POST" in body["message"]


async def test_guesser_and_analyst_validate_too(stack):
    status, body, _ = await get(f"{stack.url('guesser')}/get-context", {"username": "u"})
    assert status == 400 and body["message"].startswith("Parameter 'department' is required")
    status, body, _ = await get(f"{stack.url('analyst')}/prepare-analititcs", {"request": "r"})
    assert status == 400 and body["message"] == "Parameter 'context' is required"
    status, body, _ = await get(f"{stack.url('analyst')}/prepare-analititcs", {"preparedcontext": "c", "request": "авторизации кошельков"})
    assert status == 200 and body["is_enough"] is True and body["response"]


async def test_downstream_down_is_stored_then_recovers(stack):
    guesser = stack.services["guesser"]
    await guesser.stop()
    params = {"channel": "tg", "username": "u2", "request": "Срез авторизаций кошельков за месяц", "message_id": "m-1"}
    status, body, _ = await get(f"{stack.secretary}/analyze-request", params)
    assert status == 503 and is_error_response(body, 503)
    assert "ai-guesser" in body["message"]

    connection = await asyncpg.connect(stack.database_url)
    try:
        turn = await connection.fetchrow("SELECT * FROM turns WHERE message_id = 'm-1'")
        assert turn["status"] == "failed" and turn["request"] == params["request"], "the message is kept with its error"
        assert turn["error_status"] == 503 and "ai-guesser" in turn["error"]

        await guesser.start()  # same port: the service comes back
        status, body, _ = await get(f"{stack.secretary}/analyze-request", params)
        assert status == 200 and body["is_enough"] is True
        rows = await connection.fetch("SELECT status FROM turns WHERE message_id = 'm-1'")
        assert [r["status"] for r in rows] == ["answered"], "the retry completes the stored turn, not a second one"
    finally:
        await connection.close()


async def test_analyst_failure_is_a_gateway_error(stack):
    await stack.services["analyst"].stop()
    status, body, _ = await get(f"{stack.secretary}/analyze-request", {"channel": "direct", "username": "u3", "request": "Срез авторизаций кошельков за месяц"})
    assert status == 503 and "ai-systemanalitic" in body["message"]
