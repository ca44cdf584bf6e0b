"""Fixtures of the fault tests: a PostgreSQL of their own that they may stop and start again."""

from __future__ import annotations

import asyncio
import tempfile

import asyncpg
import pgserver
import pytest


class StoppablePostgres:
    """An embedded PostgreSQL in its own folder; `stop()` is a real fast shutdown, `start()` the same server again."""

    def __init__(self) -> None:
        self._server = pgserver.get_server(tempfile.mkdtemp(prefix="mw-pg-fault-"), cleanup_mode="delete")
        self.admin_url = self._server.get_uri()

    def url_for(self, database: str) -> str:
        return self._server.get_uri(database)

    async def create_database(self, name: str) -> str:
        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url_for(name)

    async def stop(self) -> None:
        # -m fast: what a failover or a restart does to open sessions (they are terminated).
        await asyncio.to_thread(pgserver.pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    async def start(self) -> None:
        await asyncio.to_thread(self._server.ensure_postgres_running)

    def cleanup(self) -> None:
        self._server.cleanup()


@pytest.fixture
def stoppable_postgres():
    server = StoppablePostgres()
    yield server
    server.cleanup()
