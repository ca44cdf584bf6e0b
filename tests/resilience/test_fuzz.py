"""Schemathesis against each service's own OpenAPI document: no 5xx, every answer as documented."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from ai_communicator.app import create_app as create_communicator
from ai_communicator.settings import CommunicatorSettings
from support.client import SUITE_TOKEN
from support.stack import Service, free_port

# "As documented": the status is declared for the operation and the body is JSON of the declared schema.
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
MAX_EXAMPLES = 40  # per operation and phase: the whole module stays around a minute


async def schemathesis(base_url: str, report_dir: Path) -> tuple[int, str]:
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", f"{base_url}/oas/spec", "--url", base_url,
        "--header", f"X-Service-Token: {SUITE_TOKEN}",
        "--checks", CHECKS, "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES),
        # One worker: hypothesis's lambda reflection is not thread-safe on Python 3.11.
        "--seed", "6", "--workers", "1", "--request-timeout", "20", "--generation-database", "none",
        "--no-color", "--output-truncate", "false", "--report", "junit", "--report-dir", str(report_dir),
    ]
    # Run in the report folder: schemathesis keeps its own state in the working directory.
    process = await asyncio.create_subprocess_exec(
        *command, cwd=report_dir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=240)
    return process.returncode, output.decode(errors="replace")


@pytest.mark.parametrize("service", ["secretary", "guesser", "analyst", "communicator"])
async def test_openapi_fuzzing(stack, service, tmp_path):
    if service == "communicator":
        communicator = Service("communicator", lambda: create_communicator(CommunicatorSettings(secretary_url=stack.secretary)), port=free_port())
        stack.services["communicator"] = communicator
        await communicator.start()
    code, output = await schemathesis(stack.url(service), tmp_path)
    failures = output[output.find("=== FAILURES ==="):] if "=== FAILURES ===" in output else output[-3000:]
    assert code == 0, failures[:8000]
    assert "API Operations" in output and "Tested:" in output, output[-2000:]
