"""Request-scoped values that travel with a request through logs and outgoing calls."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import structlog

REQUEST_ID_HEADER = "X-Request-ID"
SERVICE_TOKEN_HEADER = "X-Service-Token"

request_id_var: ContextVar[str] = ContextVar("request_id", default="")

# What we accept from callers as a request id: bounded, printable, no header injection.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def accept_request_id(candidate: str | None) -> str:
    """The caller's request id when it is sane, else a fresh one."""
    if candidate and _VALID_REQUEST_ID.match(candidate):
        return candidate
    return uuid.uuid4().hex


@contextmanager
def trace(request_id: str | None = None) -> Iterator[str]:
    """One request id for one unit of work (an inbound message), in logs as trace.id and on every call it makes.

    Inside a request that already has an id (the web chat's), that id is kept; what was bound
    before comes back afterwards.
    """
    request_id = accept_request_id(request_id or request_id_var.get() or None)
    token = request_id_var.set(request_id)
    bound = structlog.contextvars.bind_contextvars(trace_id=request_id)
    try:
        yield request_id
    finally:
        structlog.contextvars.reset_contextvars(**bound)
        request_id_var.reset(token)
