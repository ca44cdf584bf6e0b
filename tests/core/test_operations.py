"""Health, readiness, metrics, request ids, migrations, settings from files, the service token."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import aiohttp
import asyncpg
from pydantic import SecretStr

from ai_secretary.app import MIGRATIONS, SecretarySettings, create_app as create_secretary, migrate
from multyworkemon_common.database import apply_migrations
from support.client import AS_A_SERVICE, get, is_error_response, post
from support.stack import Service, free_port, start_stack


async def test_health_endpoints(stack):
    for name in ("secretary", "guesser", "analyst"):
        status, body, _ = await get(f"{stack.url(name)}/health/live")
        assert status == 200 and body == {"status": "ok"}
        status, body, _ = await get(f"{stack.url(name)}/health")
        assert status == 200 and body["status"] == "ok" and body["version"]
    status, body, _ = await get(f"{stack.secretary}/health/ready")
    assert status == 200 and body["checks"]["database"]["ok"] is True


async def test_secretary_not_ready_without_database_and_recovers(postgres):
    # Points at a database that does not exist yet: the service starts, says not ready, then recovers.
    url = postgres.url_for("late_database")
    service = Service("secretary", lambda: create_secretary(SecretarySettings(database_url=url, database_timeout=1)), port=free_port())
    await service.start()
    try:
        # A scrape checks too: the gauges tell the truth even where no probe has run.
        async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as response:
            scraped = await response.text()
        assert 'mw_db_up{service_name="ai-secretary"} 0' in scraped and 'mw_ready{service_name="ai-secretary"} 0' in scraped
        status, body, _ = await get(f"{service.url}/health/ready")
        assert status == 503 and body["checks"]["database"]["ok"] is False
        status, body, _ = await get(f"{service.url}/analyze-request", {"channel": "tg", "username": "u", "request": "r"})
        assert status == 503 and is_error_response(body, 503)
        status, _, _ = await get(f"{service.url}/health/live")
        assert status == 200, "alive while the database is away: no restart loop"
        admin = await asyncpg.connect(postgres.admin_url)
        await admin.execute('CREATE DATABASE "late_database"')
        await admin.close()
        for _ in range(100):
            status, body, _ = await get(f"{service.url}/health/ready")
            if status == 200:
                break
            await asyncio.sleep(0.2)
        assert status == 200, body
        async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as response:
            assert 'mw_db_up{service_name="ai-secretary"} 1' in await response.text()
    finally:
        await service.stop()
        await postgres.drop_database(url)


async def test_request_id_travels_and_metrics_count(stack):
    status, _, headers = await get(
        f"{stack.secretary}/analyze-request",
        {"channel": "direct", "username": "u", "request": "Срез авторизаций кошельков за месяц"},
        headers={**AS_A_SERVICE, "X-Request-ID": "req-test-123"},
    )
    assert status == 200 and headers["X-Request-ID"] == "req-test-123"
    connection = await asyncpg.connect(stack.database_url)
    assert await connection.fetchval("SELECT request_id FROM turns") == "req-test-123"
    await connection.close()
    _, _, headers = await get(f"{stack.secretary}/health/live", headers={"X-Request-ID": "bad id <script>" + "x" * 200})
    assert headers["X-Request-ID"] != "bad id" and len(headers["X-Request-ID"]) == 32, "unsafe ids are replaced"

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{stack.secretary}/metrics") as response:
            secretary = await response.text()
        async with session.get(f"{stack.url('guesser')}/metrics") as response:
            guesser = await response.text()
    assert 'mw_pipeline_outcomes_total{action="ответить сообщением",channel="direct",service_name="ai-secretary"} 1' in secretary
    assert 'mw_upstream_requests_total{outcome="ok",service_name="ai-secretary",upstream="ai-guesser"} 1' in secretary
    assert 'mw_db_up{service_name="ai-secretary"} 1' in secretary
    assert 'mw_ready{service_name="ai-secretary"} 1' in secretary
    assert 'mw_build_info{' in secretary
    assert 'mw_llm_requests_total{model="offline-rules-v1",outcome="ok",provider="offline",service_name="ai-guesser"} 1' in guesser


async def test_migrations_race_safely_and_run_alone(database_url):
    results = await asyncio.gather(*(apply_migrations(database_url, "ai-secretary", MIGRATIONS) for _ in range(4)))
    assert sorted(len(r) for r in results) == [0, 0, 0, len(list(MIGRATIONS.glob("*.sql")))], "each migration applied once"
    assert await migrate(SecretarySettings(database_url=database_url)) == []
    # The command the Kubernetes Job runs.
    done = subprocess.run(
        [sys.executable, "-m", "ai_secretary", "migrate"], env={**os.environ, "DATABASE_URL": database_url},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "none pending" in done.stdout


def test_settings_from_files(tmp_path, monkeypatch):
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "database_url").write_text("postgresql://app:from-secret-dir@db/mw\n")
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file")
    monkeypatch.delenv("SERVICE_TOKEN")
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    monkeypatch.setenv("SERVICE_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("MAX_CLARIFICATIONS", "5")
    settings = SecretarySettings()
    assert settings.database_url.get_secret_value() == "postgresql://app:from-secret-dir@db/mw"
    assert settings.service_token.get_secret_value() == "tok-from-file"
    assert settings.max_clarifications == 5
    assert "from-secret-dir" not in repr(settings), "secrets never print"
    monkeypatch.setenv("DATABASE_URL", "postgresql://env-wins")
    assert SecretarySettings().database_url.get_secret_value() == "postgresql://env-wins"


async def test_service_token_between_services(database_url):
    stack = await start_stack(database_url, common={"service_token": SecretStr("s3cret-token")})
    try:
        params = {"channel": "direct", "username": "u", "request": "Срез авторизаций кошельков за месяц"}
        status, body, _ = await get(f"{stack.secretary}/analyze-request", params, headers={"X-Service-Token": "s3cret-token"})
        assert status == 200, "the secretary passes its token on to the guesser and analyst"
        status, body, _ = await get(f"{stack.secretary}/analyze-request", params, headers={})
        assert status == 401 and is_error_response(body, 401), "only the communicator (with the token) may ask the secretary"
        status, body, _ = await get(f"{stack.url('guesser')}/get-context", {"username": "u", "department": "d", "position": "p", "request": "r"})
        assert status == 401 and is_error_response(body, 401), "the guesser refuses callers without the token"
        status, body, _ = await get(f"{stack.secretary}/conversations")
        assert status == 401, "operators' endpoints need the token"
        status, body, _ = await get(f"{stack.secretary}/conversations", headers={"X-Service-Token": "s3cret-token"})
        assert status == 200 and body["total"] == 1
        status, _, _ = await get(f"{stack.url('guesser')}/health/ready")
        assert status == 200, "probes need no token"
    finally:
        await stack.stop()


async def test_action_results_are_stored_with_the_turn(stack):
    _, answer, _ = await get(f"{stack.secretary}/analyze-request", {
        "channel": "tg", "username": "100003", "verified": "true", "request": "Заведи задачу на доработку куба авторизаций кошельков"})
    assert answer["action"] == "создать jira-task"
    status, body, _ = await post(f"{stack.secretary}/turns/{answer['turn_id']}/action-result",
                                 json={"action": answer["action"], "status": "done", "external_id": "DATA-123"})
    assert status == 201 and body["turn_id"] == answer["turn_id"]
    status, body, _ = await post(f"{stack.secretary}/turns/999999/action-result", json={"action": "x", "status": "done"})
    assert status == 404 and is_error_response(body, 404)
    status, body, _ = await post(f"{stack.secretary}/turns/{answer['turn_id']}/action-result", json={"action": "x", "status": "maybe"})
    assert status == 400 and is_error_response(body, 400)
    _, thread, _ = await get(f"{stack.secretary}/conversations/{answer['conversation_id']}")
    assert thread["turns"][0]["action_results"][0]["external_id"] == "DATA-123"
