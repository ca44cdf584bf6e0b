"""structlog for every process: ECS JSON lines where a machine reads them, aligned lines for a person.

The format is chosen once, at start: `LOG_FORMAT=json|console`, or by default (`auto`) console when
stdout is a terminal and JSON everywhere else (containers, CI, files, pipes), which is what Fluent
Bit ships to Elasticsearch (the nested ECS shape is in docs/architecture.md). Libraries' stdlib
records go through structlog's ProcessorFormatter with the same processors, so both look alike.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import zlib
from datetime import datetime, timezone
from typing import Any, TextIO

import structlog
from aiohttp.http_exceptions import HttpProcessingError
from structlog.dev import Column, ConsoleRenderer
from structlog.typing import EventDict, Processor

LOG_FORMATS = ("auto", "json", "console")
# The longest service name (ai-systemanalitic): every console line starts with the name in this
# width, so that under `make run` the four services' lines line up.
SERVICE_WIDTH = 17
# Picked by the name's CRC-32: the four services and the launcher (run-local) fall on distinct ones.
_SERVICE_COLORS = ("\033[1m", "\033[35m", "\033[33m", "\033[34m", "\033[32m", "\033[91m", "\033[36m")
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def log_format(requested: str | None = None, stream: TextIO | None = None) -> str:
    """"json" or "console": the one asked for (default: $LOG_FORMAT), else by whether `stream` is a terminal."""
    value = (requested if requested is not None else os.environ.get("LOG_FORMAT", "")).strip().lower() or "auto"
    if value not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {value!r}")
    if value == "auto":
        return "console" if _is_terminal(stream or sys.stdout) else "json"
    return value


def use_colors(stream: TextIO | None = None) -> bool:
    # Colours only for a terminal, and never when the person asked for none (no-color.org).
    return _is_terminal(stream or sys.stdout) and not os.environ.get("NO_COLOR")


def service_label(service: str, colors: bool) -> str:
    """The service's name as the first column of a console line (coloured by name on a terminal)."""
    label = f"{service:<{SERVICE_WIDTH}}"
    if not colors:
        return label
    return f"{_SERVICE_COLORS[zlib.crc32(service.encode()) % len(_SERVICE_COLORS)]}{label}\033[0m"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def _to_ecs(service: str, version: str) -> Processor:
    def render(_logger: Any, method: str, event: EventDict) -> str:
        record: dict[str, Any] = {
            "@timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "log": {"level": event.pop("level", method), "logger": event.pop("logger", None) or event.pop("logger_name", service)},
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


def _for_people(service: str) -> Processor:
    """The ECS-shaped values call sites log (http={...}, labels={...}, duration_ns) as flat key=value pairs."""

    def flatten(_logger: Any, _method: str, event: EventDict) -> EventDict:
        # Our own modules' names say little to a person; a library's (`logger`) stays in the line.
        event.pop("logger_name", None)
        if (duration := event.pop("duration_ns", None)) is not None:
            event["duration_ms"] = round(int(duration) / 1e6, 1)
        event.update(_dotted(event.pop("labels", None) or {}))
        for key in [k for k, v in event.items() if isinstance(v, dict)]:
            event.update(_dotted(event.pop(key), f"{key}."))
        event["service"] = service
        return event

    return flatten


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _console_renderer(service: str, colors: bool) -> ConsoleRenderer:
    # Plain tracebacks: rich's default one prints local variables, which may hold a user's text.
    renderer = ConsoleRenderer(colors=colors, pad_event_to=24, exception_formatter=structlog.dev.plain_traceback)
    label = service_label(service, colors)
    # structlog's columns (time, level, message, logger, key=value) after the service's name.
    renderer.columns = [Column("service", lambda _key, _value: label), *renderer.columns]
    return renderer




def setup_logging(service: str, version: str, level: str = "info", fmt: str | None = None) -> str:
    """Configure structlog and the stdlib loggers of libraries for this process; answer the format chosen.

    `fmt` is json, console or auto; None reads LOG_FORMAT.
    """
    threshold = _LEVELS.get(level.lower(), 20)
    chosen = log_format(fmt)
    if chosen == "console":
        colors = use_colors()
        timestamper: list[Processor] = [structlog.processors.TimeStamper(fmt="%H:%M:%S", utc=False)]
        # ConsoleRenderer formats exceptions itself (rich or plain, coloured or not).
        tail: list[Processor] = [_for_people(service), _console_renderer(service, colors)]
    else:
        timestamper = []  # the ECS renderer writes @timestamp
        tail = [structlog.processors.format_exc_info, _to_ecs(service, version)]
    shared: list[Processor] = [structlog.contextvars.merge_contextvars, structlog.processors.add_log_level, *timestamper]
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        # One write per line (print() writes the newline apart): lines of processes sharing a terminal never mix.
        logger_factory=structlog.WriteLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )
    # Libraries log through the stdlib: the same processors render their records.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    handler.addFilter(_without_request_bytes)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(threshold, logging.WARNING))
    logging.getLogger("aiohttp.access").disabled = True  # our middleware logs requests
    # Python warnings become log records too, in the format chosen, instead of bare text on stderr.
    logging.captureWarnings(True)
    return chosen


def _without_request_bytes(record: logging.LogRecord) -> bool:
    """aiohttp logs a request it cannot parse (a line or header over the limit) with the raw bytes,
    which are the user's text: keep the fact, drop the bytes."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.msg, record.args, record.exc_info = f"unparseable HTTP request answered {error.code}: {type(error).__name__}", (), None
    return True


def get_logger(name: str | None = None) -> structlog.typing.FilteringBoundLogger:
    # Lazy: module-level loggers pick up the configuration made later by setup_logging.
    return structlog.get_logger(logger_name=name) if name else structlog.get_logger()
