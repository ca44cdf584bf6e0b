"""PostgreSQL: a pool that survives the database going away, and versioned migrations."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from aiohttp import web
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from .errors import ApiError
from .logging import get_logger
from .metrics import ServiceMetrics
from .settings import DatabaseSettings

log = get_logger("multyworkemon.db")


class Database:
    """Owns the asyncpg pool; creates it lazily so a service starts (not ready) while the database is down."""

    def __init__(self, settings: DatabaseSettings, metrics: ServiceMetrics | None = None):
        self._dsn = settings.database_url.get_secret_value()
        self._max = settings.database_pool_max
        self._timeout = settings.database_timeout
        self._metrics = metrics
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()
        if metrics is not None:
            self._up = metrics.gauge("mw_db_up", "1 when the last database check succeeded")
            self._up.set({}, 0)

    async def pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                try:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._max, timeout=self._timeout, command_timeout=self._timeout,
                        reset=_keep_session,
                    )
                except (OSError, asyncpg.PostgresError, asyncio.TimeoutError) as exc:
                    raise DatabaseUnavailable(exc) from exc
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def check(self) -> tuple[bool, str]:
        """Readiness: reachable within the timeout."""
        try:
            pool = await self.pool()
            async with asyncio.timeout(self._timeout):
                await pool.fetchval("SELECT 1")
            ok, detail = True, "reachable"
        except (DatabaseUnavailable, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncio.TimeoutError) as exc:
            ok, detail = False, f"unreachable: {type(exc).__name__}"
        if self._metrics is not None:
            self._up.set({}, 1 if ok else 0)
        return ok, detail


async def _keep_session(_connection: asyncpg.Connection) -> None:
    """What a connection goes through on its way back to the pool, after asyncpg rolls back any open
    transaction. Our queries leave no session state (locks are transaction-scoped, no SET, no LISTEN),
    so asyncpg's reset query, one more round trip on every release, is skipped (bench/)."""


_PREPARING = web.AppKey("database_preparing", asyncio.Task)


def attach_schema(
    app: web.Application, database: Database, service: str, migrations: Path, prepare: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[tuple[bool, str]]]:
    """Run `prepare` (migrations, loading seed data) in the background from start-up, again and again
    until the database lets it finish: the service runs and says "not ready" meanwhile, never
    crash-loops. Returns the readiness check: the database answers and no migration is pending."""
    schema_current = False

    async def database_ready() -> tuple[bool, str]:
        nonlocal schema_current
        preparing = app.get(_PREPARING)
        if preparing is not None and not preparing.done():
            return False, "preparing: migrations and seed data"
        ok, detail = await database.check()
        if ok and not schema_current:
            pending = await pending_migrations(await database.pool(), service, migrations)
            schema_current = not pending
            if pending:
                return False, f"migrations pending: {', '.join(pending)}"
        return ok, detail

    # Whatever fails, stay up, not ready, and try again (0.5 s, doubling up to 10 s, for ever).
    prepare_until_done = AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=0.5, max=10),
        before_sleep=lambda state: log.warning("database not ready yet; retrying", error=_describe(state.outcome.exception())),
    ).wraps(prepare)

    async def schema_lifetime(app_: web.Application):
        app_[_PREPARING] = asyncio.create_task(prepare_until_done())
        yield
        app_[_PREPARING].cancel()
        await database.close()

    app.cleanup_ctx.append(schema_lifetime)
    return database_ready


def _describe(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}"


class DatabaseUnavailable(ApiError):
    def __init__(self, cause: BaseException | None = None):
        super().__init__(503, "The database is unavailable; nothing was lost, try again shortly")
        self.cause = cause


# Errors that mean "the database is away", as opposed to a bug in a query.
CONNECTION_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    # A connection cut in the middle of a query leaves its protocol in a state asyncpg reports so.
    asyncpg.InternalClientError,
)


async def apply_migrations(dsn: str, service: str, folder: Path) -> list[str]:
    """Apply `folder/*.sql` in name order, each once, under an advisory lock (replicas may race).

    One lock for every service: they share `schema_migrations`, and two services creating it at
    once (a shared database) would otherwise collide in PostgreSQL's catalog.
    """
    lock_key = int.from_bytes(hashlib.sha256(b"multyworkemon:migrations").digest()[:8], "big", signed=True)
    connection = await asyncpg.connect(dsn)
    applied: list[str] = []
    try:
        await connection.execute("SELECT pg_advisory_lock($1)", lock_key)
        try:
            await connection.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       service text NOT NULL, version text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (service, version))"""
            )
            done = {r["version"] for r in await connection.fetch("SELECT version FROM schema_migrations WHERE service = $1", service)}
            for path in sorted(folder.glob("*.sql")):
                if path.stem in done:
                    continue
                async with connection.transaction():
                    await connection.execute(path.read_text(encoding="utf-8"))
                    await connection.execute("INSERT INTO schema_migrations (service, version) VALUES ($1, $2)", service, path.stem)
                applied.append(path.stem)
                log.info("migration applied", labels={"migration": path.stem, "component": service})
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", lock_key)
    finally:
        await connection.close()
    return applied


async def pending_migrations(pool: asyncpg.Pool, service: str, folder: Path) -> list[str]:
    """Migrations not applied yet (readiness: a service is not ready on an old schema)."""
    wanted = [path.stem for path in sorted(folder.glob("*.sql"))]
    try:
        done = {r["version"] for r in await pool.fetch("SELECT version FROM schema_migrations WHERE service = $1", service)}
    except asyncpg.UndefinedTableError:
        return wanted
    return [version for version in wanted if version not in done]
