"""Calls from one service to another: keep-alive pool, timeouts, retries, request id, token."""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .context import REQUEST_ID_HEADER, SERVICE_TOKEN_HEADER, request_id_var
from .errors import UpstreamError
from .metrics import ServiceMetrics


Answer = TypeVar("Answer", bound=BaseModel)


class _Unreachable(Exception):
    """No answer came over the connection: it could not be made, or the peer closed it under the
    request. Safe to retry on a new one: every call between the services is idempotent (the
    guesser and the analyst compute, the secretary keys a message on its id)."""


class ServiceClient:
    """A JSON client for one upstream service."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        metrics: ServiceMetrics,
        token: str = "",
        timeout: float = 60.0,
        connect_attempts: int = 3,
        pool_size: int = 200,
    ):
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._metrics = metrics
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=3)
        self._connect_attempts = connect_attempts
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        # Created lazily inside the running loop; one pool per upstream, kept alive between calls.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        headers = {REQUEST_ID_HEADER: request_id_var.get() or ""}
        if self._token:
            headers[SERVICE_TOKEN_HEADER] = self._token
        return headers

    async def call(self, path: str, body: BaseModel, answer: type[Answer]) -> Answer:
        """Send a contract model, get a contract model back; UpstreamError (502) when the answer does not fit.

        POST carries any length; a peer that implements only the seed's GET answers 405 and is
        asked again with GET, its scalar fields as the query (the seed's parameters are all scalars).
        """
        payload = body.model_dump(mode="json", exclude_none=True)
        try:
            result = await self.request_json("POST", path, payload=payload)
        except UpstreamError as exc:
            if exc.answered != 405:
                raise
            params = {key: _query_value(value) for key, value in payload.items() if isinstance(value, (str, int, float, bool))}
            result = await self.request_json("GET", path, params=params)
        try:
            return answer.model_validate(result)
        except ValidationError as exc:
            raise UpstreamError(502, self.name, f"{self.name} answered without the fields of {answer.__name__}: {_first_error(exc)}") from None

    async def post_json(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST JSON, return the JSON answer; raise UpstreamError with the right status otherwise."""
        return await self.request_json("POST", path, payload=payload)

    async def get_json(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """GET with query parameters, return the JSON answer; errors as post_json."""
        return await self.request_json("GET", path, params=params)

    async def request_json(
        self, method: str, path: str, *, payload: dict[str, Any] | None = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        outcome = "error"
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Unreachable),
                stop=stop_after_attempt(self._connect_attempts),
                wait=wait_random_exponential(multiplier=0.1, max=1.0),
                reraise=True,
            ):
                with attempt:
                    result = await self._request_once(method, path, payload, params)
            outcome = "ok"
            return result
        except _Unreachable as exc:
            outcome = "unavailable"
            raise UpstreamError(503, self.name, f"{self.name} is unavailable: {exc}") from None
        except asyncio.TimeoutError:
            outcome = "timeout"
            raise UpstreamError(504, self.name, f"{self.name} did not answer in time") from None
        except UpstreamError as exc:
            outcome = "unavailable" if exc.status == 503 else "error"
            raise
        finally:
            labels = {"upstream": self.name}
            self._metrics.upstream_requests.inc({**labels, "outcome": outcome})
            self._metrics.upstream_duration.observe(labels, time.perf_counter() - started)

    async def _request_once(self, method: str, path: str, payload: dict[str, Any] | None, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            async with self.session.request(
                method, self.base_url + path, json=payload, params=params, headers=self._headers()
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
                    body = None
        # ClientOSError too ("Can not write request body", a reset): a peer that is shutting down
        # closes its idle keep-alive connections, and a request just sent on one of ours fails so.
        # aiohttp retries that itself only for GET-like methods; these calls are POSTs. Seen as 502s
        # in tests/cluster while a rolling update replaced the analyst's pods.
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError) as exc:
            raise _Unreachable(str(exc) or type(exc).__name__) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(502, self.name, f"{self.name} failed: {exc}") from exc
        if 200 <= response.status < 300 and isinstance(body, dict):
            return body
        detail = body.get("message") if isinstance(body, dict) else None
        # Pass on the upstream's own gateway errors (its LLM failed) as they are; anything else is a bad answer.
        status = response.status if response.status in (502, 503, 504) else 502
        raise UpstreamError(
            status, self.name, f"{self.name} answered {response.status}: {detail or 'no detail'}",
            answered=response.status, retry_after=response.headers.get("Retry-After"),
        )


def _query_value(value: str | int | float | bool) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
