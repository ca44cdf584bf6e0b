"""structlog set up to print one JSON object per line in the nested ECS shape (docs/architecture.md)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

import structlog
from aiohttp.http_exceptions import HttpProcessingError

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _to_ecs(service: str, version: str):
    def render(_logger: Any, method: str, event: dict[str, Any]) -> str:
        record: dict[str, Any] = {
            "@timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log": {"level": event.pop("level", method), "logger": event.pop("logger_name", service)},
            "message": str(event.pop("event", "")),
            "service": {"name": service, "version": version},
        }
        if (trace_id := event.pop("trace_id", None)) is not None:
            record["trace"] = {"id": str(trace_id)}
        if (duration := event.pop("duration_ns", None)) is not None:
            record["event"] = {"duration": int(duration)}
        for key in ("http", "url"):
            if key in event:
                record[key] = event.pop(key)
        exc = event.pop("exception", None)
        err = event.pop("error", None)
        if exc or err:
            record["error"] = {"message": str(err) if err is not None else "", **({"stack_trace": exc} if exc else {})}
        extras = event.pop("labels", None) or {}
        extras.update(event)
        if extras:
            # One type per key across every service: free-form extras are strings under `labels`.
            record["labels"] = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str) for k, v in extras.items()}
        return json.dumps(record, ensure_ascii=False, default=str)

    return render


def setup_logging(service: str, version: str, level: str = "info") -> None:
    """Configure structlog (and the stdlib loggers of libraries) for this process."""
    threshold = _LEVELS.get(level.lower(), 20)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            _to_ecs(service, version),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the stdlib: route warnings and errors through the same JSON renderer.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_StdlibFormatter(_to_ecs(service, version)))
    handler.addFilter(_without_request_bytes)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger("aiohttp.access").disabled = True  # our middleware logs requests


def _without_request_bytes(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (a line or header over the limit) with the raw bytes,
    which are the user's text: keep the fact, drop the bytes."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.msg, record.args, record.exc_info = f"unparseable HTTP request answered {error.code}: {type(error).__name__}", (), None
    return True


class _StdlibFormatter(logging.Formatter):
    def __init__(self, render):
        super().__init__()
        self._render = render

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {"event": record.getMessage(), "level": record.levelname.lower(), "logger_name": record.name}
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return self._render(None, record.levelname.lower(), event)


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    # Lazy: module-level loggers pick up the configuration made later by setup_logging.
    return structlog.get_logger(logger_name=name) if name else structlog.get_logger()
