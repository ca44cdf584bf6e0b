"""Request-scoped values that travel with a request through logs and outgoing calls."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

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
