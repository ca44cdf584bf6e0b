"""`make run`: the whole system on this machine, with no key and nothing installed by hand.

Starts an embedded PostgreSQL (pgserver, data kept in .run/pgdata) unless DATABASE_URL is set,
then the four services with the offline model unless LLM_* variables say otherwise, waits until
each is ready and prints where to go. Ctrl-C stops everything.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"

SERVICES = [
    # name, module, port
    ("ai-guesser", "ai_guesser", 8001),
    ("ai-systemanalitic", "ai_systemanalitic", 8002),
    ("ai-secretary", "ai_secretary", 8000),
    ("ai-communicator", "ai_communicator", 8003),
]


def database_url(folder: Path = RUN_DIR / "pgdata") -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    import pgserver

    folder.parent.mkdir(exist_ok=True)
    server = pgserver.get_server(folder, cleanup_mode="stop")
    if "multyworkemon" not in server.psql("SELECT datname FROM pg_database;"):
        server.psql("CREATE DATABASE multyworkemon;")
    return server.get_uri("multyworkemon")


def wait_ready(name: str, port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"{name} exited with code {process.returncode}; see its log lines above")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{name} did not become ready on port {port} within {timeout:.0f}s")


def system_env(dsn: str) -> dict[str, str]:
    """The environment every service gets (the benchmark starts the system with the same one)."""
    return {
        **os.environ,
        "LLM_PROVIDER": os.environ.get("LLM_PROVIDER", "offline"),
        "DATABASE_URL": dsn,
        "USERS_FILE": os.environ.get("USERS_FILE", str(ROOT / "services/ai-secretary/users.example.yaml")),
        "KNOWLEDGE_DIR": os.environ.get("KNOWLEDGE_DIR", str(ROOT / "services/ai-systemanalitic/knowledge")),
        "GUESSER_URL": "http://127.0.0.1:8001",
        "ANALYST_URL": "http://127.0.0.1:8002",
        "SECRETARY_URL": "http://127.0.0.1:8000",
        "PYTHONUNBUFFERED": "1",
    }


def main() -> None:
    dsn = database_url()
    base = system_env(dsn)
    processes: list[tuple[str, subprocess.Popen]] = []

    def stop(*_args) -> None:
        for _, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _, process in processes:
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                process.kill()
        sys.exit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for name, module, port in SERVICES:
        if importlib.util.find_spec(f"{module}.__main__") is None:
            print(f"{name}: not built yet, skipped")
            continue
        env = {**base, "PORT": os.environ.get(f"{module.upper()}_PORT", str(port))}
        process = subprocess.Popen([sys.executable, "-m", module], env=env, cwd=ROOT)
        processes.append((name, process))
        wait_ready(name, int(env["PORT"]), process)
        print(f"{name}: ready on http://127.0.0.1:{env['PORT']}", flush=True)

    print(
        "\nMultyWorkemon is running (LLM provider: {provider}).\n"
        "  web chat:   http://127.0.0.1:8003/\n"
        "  API:        curl 'http://127.0.0.1:8000/analyze-request?channel=direct&username=smirnovanton"
        "&request=%D0%AF%20%D1%85%D0%BE%D1%87%D1%83%20%D0%B0%D0%BD%D0%B0%D0%BB%D0%B8%D1%82%D0%B8%D0%BA%D1%83'\n"
        "  OpenAPI:    http://127.0.0.1:8000/oas\n"
        "  metrics:    http://127.0.0.1:8000/metrics   health: http://127.0.0.1:8000/health/ready\n"
        "Ctrl-C stops everything.".format(provider=base["LLM_PROVIDER"]),
        flush=True,
    )
    while True:
        for name, process in processes:
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}; stopping the rest", flush=True)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
