"""compose.yaml, for people without Kubernetes, run for real: podman-compose (Debian) on the
images services/Dockerfile built, every container healthy by its own healthcheck, the README's
conversation on the published API port, the web chat page, and nothing left afterwards."""

from __future__ import annotations

import os
import secrets
import socket
import time
import urllib.request

import pytest

from .conftest import SCRIPTS, readme_conversation, report, run, wait_until
from .host import Snapshot

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

SERVICES = ("postgres", "ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_compose_up_is_healthy_and_answers(images):
    project = f"mwtest{os.getpid()}"
    token = secrets.token_hex(16)
    api, chat = free_port(), free_port()
    env = {**os.environ, "SERVICE_TOKEN": token, "MW_API_PORT": str(api), "MW_CHAT_PORT": str(chat)}
    compose = lambda action, **kw: run([str(SCRIPTS / "compose.sh"), action, project], env=env, **kw)  # noqa: E731
    before = Snapshot.take()
    started = time.monotonic()
    try:
        compose("up", timeout=300, log="compose-up")
        containers = compose("ps", timeout=60).stdout.split()
        assert len(containers) == len(SERVICES), containers

        # No systemd here to run podman's healthcheck timers: run each container's declared check
        # until it passes, as the timer would.
        def healthy() -> bool:
            return all(run(["podman", "healthcheck", "run", name], timeout=60, check=False).returncode == 0
                       for name in containers)

        wait_until(healthy, 240, 3, "every compose service healthy")
        for name in containers:
            status = run(["podman", "inspect", "--format", "{{.State.Health.Status}}", name], timeout=60).stdout.strip()
            assert status == "healthy", (name, status)
        report(f"podman-compose up: {len(containers)} containers healthy in {time.monotonic() - started:.0f} s")

        first, second = readme_conversation(f"http://127.0.0.1:{api}", token)
        report(f"compose README request 1 -> {first['action']}; request 2 -> {second['action']} "
               f"with {len(second['sources'])} sources")
        with urllib.request.urlopen(f"http://127.0.0.1:{chat}/", timeout=10) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        compose("down", timeout=300, log="compose-down", check=False)
        deadline = time.monotonic() + 20
        while (left := Snapshot.take().left_since(before)) and time.monotonic() < deadline:
            time.sleep(1)
        report(f"compose down: left on the host: {left or 'nothing'}")
    assert not left, left
