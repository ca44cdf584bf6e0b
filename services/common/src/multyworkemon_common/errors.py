"""The contract's ErrorResponse shape and the exceptions that map onto it."""

from __future__ import annotations

import json
from functools import partial
from http import HTTPStatus

from aiohttp import web


class ApiError(Exception):
    """An error the caller should see as it is: status and a message meant for people."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class UpstreamError(ApiError):
    """Another service or the LLM failed; 502 bad answer, 503 unreachable, 504 timed out.

    `answered` is the status the upstream itself answered (None when it gave no answer), so a
    caller can tell "not found" or "busy" (409) from a failure; `retry_after` is its Retry-After.
    """

    def __init__(self, status: int, upstream: str, message: str, *, answered: int | None = None, retry_after: str | None = None):
        super().__init__(status, message)
        self.upstream = upstream
        self.answered = answered
        self.retry_after = retry_after


def error_body(status: int, message: str) -> dict:
    return {"error": HTTPStatus(status).phrase, "message": message, "statusCode": status}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, message), status=status, headers=headers)


_dumps = partial(json.dumps, ensure_ascii=False)


def json_response(data, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with readable non-ASCII text (the users write in Russian)."""
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)
