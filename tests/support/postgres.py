"""A real PostgreSQL for the tests: `DATABASE_URL` when given, otherwise an embedded server (pgserver)."""

from __future__ import annotations

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
        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()
        return self.url_for(name)

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
