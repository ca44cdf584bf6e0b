"""`make run` as a newcomer meets it (issue 16, issue 10 item 6): lines for a person on a terminal, JSON
lines anywhere else, one summary block whose URLs and curl work, one sentence when it cannot start."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import stat
import subprocess
import urllib.request

import pytest

from launcher import ROOT, SERVICES, Launcher

KNOWLEDGE = ROOT / "services/ai-systemanalitic/knowledge"


@pytest.fixture
def launchers():
    started: list[Launcher] = []
    yield started
    for launcher in started:
        launcher.close()


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"X-Service-Token": token} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def row(block: str, label: str) -> str:
    """The value of a `  label   value` line of the summary block."""
    (line,) = [line for line in block.splitlines() if line.startswith(f"  {label}  ")]
    return line[len(label) + 2 :].strip()


def curl_command(block: str) -> str:
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("curl "))
    end = next(i for i in range(start, len(lines)) if not lines[i].endswith("\\"))
    return "\n".join(lines[start : end + 1])


def check_urls(block: str, launcher: Launcher, token: str) -> None:
    web = f"http://127.0.0.1:{launcher.ports['ai-communicator']}/"
    assert row(block, "web chat") == web
    urls = [web] + [f"http://127.0.0.1:{port}/{path}" for port in launcher.ports.values() for path in ("oas", "health", "metrics")]
    for url in urls:
        assert re.search(rf"{re.escape(url)}(\s|$)", block, re.M), f"{url} is in the summary"
        status, _ = get(url)
        assert status == 200, f"{url} answered {status}"
    # The knowledge base's document count is the analyst's own.
    status, body = get(f"http://127.0.0.1:{launcher.ports['ai-systemanalitic']}/knowledge/documents?limit=1", token)
    assert status == 200
    total = json.loads(body)["total"]
    assert total == len(list(KNOWLEDGE.glob("*.md"))) and row(block, "knowledge base").startswith(f"{total} documents")


def run_curl(block: str, env: dict[str, str]) -> dict:
    done = subprocess.run(["bash", "-c", curl_command(block)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_on_a_terminal_a_person_reads_named_lines_and_one_summary(tmp_path, launchers):
    launcher = Launcher(tmp_path / "run", terminal=True)
    launchers.append(launcher)
    launcher.start()
    block = launcher.wait_for_summary()
    token_file = tmp_path / "run/service-token"
    token = token_file.read_text().strip()

    # The token: made once, private, passed to every service, and the block's curl uses it.
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600 and len(token) >= 32
    assert row(block, "service token").startswith(f"{token_file} (made now")
    assert f'-H "X-Service-Token: $(cat {token_file})"' in block
    assert token not in launcher.text(), "the token itself is never printed"
    answer = run_curl(block, launcher.env)
    assert answer["response"] and answer["request"]
    status, _ = get(f"http://127.0.0.1:{launcher.ports['ai-secretary']}/conversations")
    assert status == 401, "the services were given the token and ask for it"

    check_urls(block, launcher, token)
    assert row(block, "LLM").startswith("offline")
    assert row(block, "identity").startswith("anonymous")
    assert "Ctrl-C stops the services and PostgreSQL." in block

    raw = launcher.raw["out"].decode("utf-8", "replace")
    assert "\x1b[" in raw, "colours on a terminal"
    lines = [line for line in launcher.text().splitlines() if line.strip() and line not in block]
    for name in SERVICES:
        assert any(line.startswith(f"{name:<17} ") and " starting " in line for line in lines), f"{name}: a console line led by its name"
    assert not [line for line in lines if line.lstrip().startswith("{")], "no JSON on a terminal"
    assert not re.search(r"Warning|Traceback|warning\s*\]", launcher.text()), launcher.text()

    launcher.ctrl_c()
    assert launcher.wait() == 0
    assert " stopping" in launcher.text() and "shutting down" in launcher.text()
    launcher.assert_all_gone()

    # The next run keeps the token.
    assert token_file.read_text().strip() == token


async def test_without_a_terminal_every_line_is_ecs_json_and_the_block_goes_to_stderr(tmp_path, launchers, openai_server):
    secret = "sk-test-never-printed"
    env = {
        "SERVICE_TOKEN": "token-from-the-environment-" + "x" * 16,
        "LLM_PROVIDER": "openai", "LLM_BASE_URL": openai_server.base_url, "LLM_MODEL": "stub-model", "LLM_API_KEY": secret,
        "LLM_JSON_MODE": "json_object",
        "WEB_TRUSTED_PROXIES": "127.0.0.1", "WEB_IDENTITY_HEADER": "X-Forwarded-Email",
    }
    launcher = Launcher(tmp_path / "run", terminal=False, **env)
    launchers.append(launcher)
    launcher.start()
    block = await asyncio.to_thread(launcher.wait_for_summary)

    assert row(block, "service token") == "SERVICE_TOKEN from your environment"
    assert '-H "X-Service-Token: $SERVICE_TOKEN"' in block
    assert not (tmp_path / "run/service-token").exists(), "a given SERVICE_TOKEN wins"
    answer = await asyncio.to_thread(run_curl, block, launcher.env)
    assert answer["response"]
    assert any(r["headers"].get("Authorization") == f"Bearer {secret}" for r in openai_server.requests), "the key reached the model"
    await asyncio.to_thread(check_urls, block, launcher, env["SERVICE_TOKEN"])
    host = openai_server.base_url.split("/")[2]
    assert row(block, "LLM") == f"stub-model at {host} (OpenAI-compatible)"
    assert row(block, "identity") == "signed in: the user is X-Forwarded-Email as set by 127.0.0.1"

    launcher.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(launcher.wait) == 0
    launcher.assert_all_gone()

    out, err = launcher.text("out"), launcher.text("err")
    assert secret not in out + err and env["SERVICE_TOKEN"] not in out + err
    assert "\x1b[" not in launcher.raw["out"].decode() + launcher.raw["err"].decode(), "no colours off a terminal"
    records = [json.loads(line) for line in out.splitlines()]  # one JSON object per line, nothing else
    assert {r["service"]["name"] for r in records} == {*SERVICES, "run-local"}
    assert all(set(r) >= {"@timestamp", "log", "message", "service"} for r in records)
    (running,) = [r for r in records if r["message"] == "MultyWorkemon is running"]
    assert running["labels"]["ai-secretary"] == f"http://127.0.0.1:{launcher.ports['ai-secretary']}"
    # stderr holds the block and nothing else: no warnings at start, pgserver's lock in a private runtime folder.
    assert err.strip() == block.strip()
    assert stat.S_IMODE((tmp_path / "run/runtime").stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LLM_PROVIDER": "openai"}, ["LLM_PROVIDER=openai needs LLM_API_KEY and LLM_MODEL"]),
        ({"LLM_PROVIDER": "openai", "LLM_API_KEY": "k"}, ["needs LLM_MODEL as well"]),
        ({"LLM_MODEL": "gpt-4o-mini"}, ["LLM_MODEL is set but LLM_PROVIDER is not"]),
        ({"LLM_PROVIDER": "OpenAI"}, ["LLM_PROVIDER='OpenAI' is not valid"]),
        ({"LOG_FORMAT": "xml"}, ["LOG_FORMAT must be one of auto, json, console"]),
    ],
)
def test_incomplete_settings_are_one_sentence(tmp_path, launchers, env, expected):
    launcher = Launcher(tmp_path / "run", terminal=False, **env)
    launchers.append(launcher)
    code, out, err = launcher.run()
    assert_one_sentence(code, out, err, *expected)
    assert not (tmp_path / "run/pgdata").exists(), "nothing was started"


def test_a_taken_port_is_one_sentence(tmp_path, launchers):
    launcher = Launcher(tmp_path / "run", terminal=False)
    launchers.append(launcher)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        launcher.env["AI_SECRETARY_PORT"] = str(port)
        code, out, err = launcher.run()
    assert_one_sentence(code, out, err, f"Port {port} (ai-secretary) is already in use", "AI_SECRETARY_PORT=<port> make run")
    assert not (tmp_path / "run/pgdata").exists(), "nothing was started"
    launcher.assert_all_gone()


def test_postgresql_that_cannot_start_is_one_sentence(tmp_path, launchers):
    pgdata = tmp_path / "run/pgdata"
    pgdata.mkdir(parents=True)
    # A broken data folder: it claims a version but holds no configuration.
    (pgdata / "PG_VERSION").write_text("16\n")
    launcher = Launcher(tmp_path / "run", terminal=False)
    launchers.append(launcher)
    code, out, err = launcher.run()
    assert_one_sentence(code, out, err, f"PostgreSQL could not start in {pgdata}: could not access the server configuration file",
                        f"its log: {pgdata / 'log'}; move the folder away")
    launcher.assert_all_gone()


def assert_one_sentence(code: int, out: str, err: str, *parts: str) -> None:
    assert code == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("."), err
    for part in parts:
        assert part in lines[0]
    assert "Traceback" not in out + err
    assert all(line.startswith("{") for line in out.splitlines()), "stdout stays JSON lines"
