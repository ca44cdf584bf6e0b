"""JSON answers in the contract's shapes: the ErrorResponse body and readable non-ASCII text."""

from __future__ import annotations

import json
from functools import partial
from http import HTTPStatus

from aiohttp import web


def error_body(status: int, message: str) -> dict:
    return {"error": HTTPStatus(status).phrase, "message": message, "statusCode": status}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return json_response(error_body(status, message), status=status, headers=headers)


_dumps = partial(json.dumps, ensure_ascii=False)


def json_response(data, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with readable non-ASCII text (the users write in Russian)."""
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)
