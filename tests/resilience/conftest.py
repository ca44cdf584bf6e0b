"""Fixtures of the fault tests: a PostgreSQL of their own that they may stop and start again."""

from __future__ import annotations

import pytest

from support.postgres import StoppablePostgres


@pytest.fixture
def stoppable_postgres():
    server = StoppablePostgres()
    yield server
    server.cleanup()
