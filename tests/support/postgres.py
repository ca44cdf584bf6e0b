"""A real PostgreSQL for the tests: `DATABASE_URL` when given, otherwise an embedded server (pgserver);
and one of its own that a fault test may stop and start again."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg


class PostgresServer:
    def __init__(self) -> None:
        self._embedded = None
        url = os.environ.get("TEST_DATABASE_URL")
        if not url:
            import pgserver  # embedded PostgreSQL binaries from PyPI

            self._folder = tempfile.mkdtemp(prefix="mw-pg-")
            self._embedded = pgserver.get_server(self._folder, cleanup_mode="stop")
            url = self._embedded.get_uri()
        self.admin_url = url

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    async def create_database(self) -> str:
        return await _create_database(self, f"t_{uuid.uuid4().hex[:12]}")

    async def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    def stop(self) -> None:
        if self._embedded is not None:
            self._embedded.cleanup()


class StoppablePostgres:
    """An embedded PostgreSQL in its own folder; `stop()` is a real fast shutdown, `start()` the same server again."""

    def __init__(self) -> None:
        import pgserver

        self._server = pgserver.get_server(tempfile.mkdtemp(prefix="mw-pg-fault-"), cleanup_mode="delete")
        self.admin_url = self._server.get_uri()

    def url_for(self, database: str) -> str:
        return self._server.get_uri(database)

    async def create_database(self, name: str) -> str:
        return await _create_database(self, name)

    async def stop(self) -> None:
        import pgserver

        # -m fast: what a failover or a restart does to open sessions (they are terminated).
        await asyncio.to_thread(pgserver.pg_ctl, ["-w", "-m", "fast", "stop"], pgdata=self._server.pgdata, user=self._server.system_user)

    async def start(self) -> None:
        await asyncio.to_thread(self._server.ensure_postgres_running)

    def cleanup(self) -> None:
        self._server.cleanup()


async def _create_database(server: PostgresServer | StoppablePostgres, name: str) -> str:
    connection = await asyncpg.connect(server.admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return server.url_for(name)
