"""The log format follows stdout (issue 16.1, issue 12.8): console lines for a terminal, ECS JSON for
anything else, LOG_FORMAT overriding both; library (stdlib) records and Python warnings look the same."""

from __future__ import annotations

import json
import os
import sys

import pytest

from launcher import Captured

PROGRAM = """
import logging, warnings
import structlog
from multyworkemon_common.logging import get_logger, setup_logging

print(setup_logging("ai-guesser", "1.2.3"), flush=True)
structlog.contextvars.bind_contextvars(trace_id="t-1")
get_logger("multyworkemon.http").info(
    "request served", http={"request": {"method": "GET"}}, url={"path": "/x"}, duration_ns=2_500_000, labels={"turn_id": "7"})
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("aiohttp.server").exception("Error handling request")
warnings.warn("deprecated thing")
"""


def run(terminal: bool, **env: str) -> tuple[str, list[str], str]:
    """The format chosen, the log lines, and the raw bytes as text."""
    base = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "NO_COLOR")}
    captured = Captured({**base, **env}, terminal=terminal)
    try:
        captured.start([sys.executable, "-c", PROGRAM])
        assert captured.wait(60) == 0, captured.text() + captured.text("err")
    finally:
        captured.close()
    chosen, *lines = captured.text().splitlines()
    assert captured.text("err") == "", "nothing on stderr: warnings are log records"
    return chosen, lines, captured.raw["out"].decode()


@pytest.mark.parametrize(("terminal", "env"), [(False, {}), (True, {"LOG_FORMAT": "json"})])
def test_json_off_a_terminal_or_when_asked(terminal, env):
    chosen, lines, raw = run(terminal, **env)
    assert chosen == "json" and "\x1b[" not in raw
    served, failed, warned = (json.loads(line) for line in lines)
    assert served == {
        "@timestamp": served["@timestamp"], "log": {"level": "info", "logger": "multyworkemon.http"},
        "message": "request served", "service": {"name": "ai-guesser", "version": "1.2.3"}, "trace": {"id": "t-1"},
        "event": {"duration": 2500000}, "http": {"request": {"method": "GET"}}, "url": {"path": "/x"}, "labels": {"turn_id": "7"},
    }
    # A library's record goes through structlog's ProcessorFormatter: same shape, its logger, the request's trace.
    assert failed["log"] == {"level": "error", "logger": "aiohttp.server"} and failed["trace"] == {"id": "t-1"}
    assert failed["error"]["stack_trace"].endswith("ValueError: boom")
    assert warned["log"] == {"level": "warning", "logger": "py.warnings"} and "deprecated thing" in warned["message"]


@pytest.mark.parametrize(
    ("terminal", "env", "colours"),
    [(True, {}, True), (False, {"LOG_FORMAT": "console"}, False), (True, {"NO_COLOR": "1"}, False)],
)
def test_console_on_a_terminal_or_when_asked(terminal, env, colours):
    chosen, lines, raw = run(terminal, **env)
    assert chosen == "console" and ("\x1b[" in raw) == colours
    served = lines[0]
    # service, time, level, message, key=value (the ECS objects flattened), in that order
    assert served.startswith("ai-guesser        ") and " [info     ] request served " in served
    for pair in ("duration_ms=2.5", "http.request.method=GET", "url.path=/x", "turn_id=7", "trace_id=t-1"):
        assert pair in served
    assert "multyworkemon.http" not in served, "our own module names are noise for a person"
    failed = next(line for line in lines if "Error handling request" in line)
    assert failed.startswith("ai-guesser ") and "[aiohttp.server]" in failed, "a library's name stays"
    assert lines[lines.index(failed) + 1 :][:1] == ["Traceback (most recent call last):"]
    assert any(line.startswith("ValueError: boom") for line in lines)
    assert any("[py.warnings]" in line for line in lines) or any("deprecated thing" in line for line in lines)
