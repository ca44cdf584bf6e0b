"""The contract's ErrorResponse shape and the exceptions that map onto it."""

from __future__ import annotations



class ServiceError(Exception):
    """Any failure our API answers as it is: the status to answer and a message meant for people.

    The one base the middleware maps onto the ErrorResponse shape; the LLM layer's errors derive
    from it too, so neither side imports the other.
    """

    status = 500

    def __init__(self, message: str, *, status: int | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message
        self.headers = headers or {}


class ApiError(ServiceError):
    """An error the caller should see as it is: status and a message meant for people."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None):
        super().__init__(message, status=status, headers=headers)


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
