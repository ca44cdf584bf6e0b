"""`make run`: the whole system on this machine, with no key and nothing installed by hand.

Checks what it can before starting anything (LLM settings, free ports), generates the service token
once into $RUN_DIR/service-token, starts an embedded PostgreSQL (pgserver, data in $RUN_DIR/pgdata)
unless DATABASE_URL is set, then the four services with the offline model unless LLM_* say
otherwise, waits until each is ready and prints one summary block. Ctrl-C stops everything. What
goes wrong before that is one sentence on stderr and exit code 1, never a traceback.

Logs: the services and this script write to this terminal for a person (the service's name first on
each line) and ECS JSON when stdout is not a terminal; LOG_FORMAT=json|console overrides both.
Settings of its own: RUN_DIR (default .run) and the ports AI_SECRETARY_PORT, AI_GUESSER_PORT,
AI_SYSTEMANALITIC_PORT, AI_COMMUNICATOR_PORT (default 8000-8003).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from multyworkemon_common.context import SERVICE_TOKEN_HEADER
from multyworkemon_common.llm import LLMSettings
from multyworkemon_common.logging import get_logger, log_format, service_label, setup_logging, use_colors
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = Path(os.environ.get("RUN_DIR") or ROOT / ".run").absolute()
LAUNCHER = "run-local"

SERVICES = [
    # name, module, port (in start order: each one's callees first)
    ("ai-guesser", "ai_guesser", 8001),
    ("ai-systemanalitic", "ai_systemanalitic", 8002),
    ("ai-secretary", "ai_secretary", 8000),
    ("ai-communicator", "ai_communicator", 8003),
]
EXAMPLE_REQUEST = "Я хочу получать аналитику о операциях наших кошельков"
log = get_logger()


@dataclass
class Service:
    name: str
    module: str
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def port_variable(self) -> str:
        return f"{self.module.upper()}_PORT"


def planned_services() -> list[Service]:
    """The services that are installed, on the ports the environment asks for."""
    planned = []
    for name, module, default in SERVICES:
        if importlib.util.find_spec(f"{module}.__main__") is None:
            log.warning("not built yet, skipped", labels={"service": name})
            continue
        service = Service(name, module, default)
        value = os.environ.get(service.port_variable, str(default))
        if not value.isdigit() or not 0 < int(value) < 65536:
            sys.exit(f"{service.port_variable}={value!r} is not a port number (1-65535).")
        service.port = int(value)
        planned.append(service)
    return planned


def refuse_taken_ports(services: list[Service], host: str) -> None:
    taken = [service for service in services if not _port_free(host, service.port)]
    if taken:
        ports = ", ".join(f"{s.port} ({s.name})" for s in taken)
        moves = " ".join(f"{s.port_variable}=<port>" for s in taken)
        sys.exit(
            f"Port{'s' if len(taken) > 1 else ''} {ports} {'are' if len(taken) > 1 else 'is'} already in use: "
            f"stop what listens there (perhaps another `make run`) or choose others with `{moves} make run`."
        )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As the services bind (asyncio sets SO_REUSEADDR): a closed socket in TIME_WAIT is no obstacle.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Token:
    value: str
    where: str  # for a person
    shell: str  # for a copy-paste command line


def service_token() -> Token:
    """SERVICE_TOKEN (or SERVICE_TOKEN_FILE) when given, else the one in $RUN_DIR/service-token, made on first use."""
    if os.environ.get("SERVICE_TOKEN"):
        return Token(os.environ["SERVICE_TOKEN"], "SERVICE_TOKEN from your environment", "$SERVICE_TOKEN")
    if given := os.environ.get("SERVICE_TOKEN_FILE"):
        try:
            value = Path(given).read_text(encoding="utf-8").strip()
        except OSError as exc:
            sys.exit(f"SERVICE_TOKEN_FILE={given} cannot be read: {exc.strerror}.")
        return Token(value, f"{given} (SERVICE_TOKEN_FILE)", f"$(cat {_shown(Path(given))})")
    path = RUN_DIR / "service-token"
    try:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        try:
            # Created with 0600 from the start: the token never sits in a file others may read.
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            path.chmod(0o600)
            value = path.read_text(encoding="utf-8").strip()
            note = "made by an earlier run"
        else:
            value = secrets.token_urlsafe(32)
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(value + "\n")
            note = "made now, kept for later runs"
    except OSError as exc:
        sys.exit(f"Cannot keep the service token in {path}: {exc.strerror}.")
    if not value:
        sys.exit(f"{path} is empty: delete it and `make run` makes a new token.")
    return Token(value, f"{_shown(path)} ({note})", f"$(cat {_shown(path)})")


def _shown(path: Path) -> str:
    """A path as a person in this folder would type it."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def model_in_use(token: str) -> str:
    """Which model answers, for the summary (never the key); one sentence when LLM_* is set but incomplete."""
    try:
        # The services' own settings class, so *_FILE and $SECRETS_DIR count as they do there.
        settings = LLMSettings(service_token=token)
    except ValidationError as exc:
        error = exc.errors()[0]
        sys.exit(f"{'_'.join(map(str, error['loc'])).upper()}={error.get('input')!r} is not valid: {error['msg']}.")
    given = [name.upper() for name in ("llm_base_url", "llm_api_key", "llm_model") if name in settings.model_fields_set]
    if settings.llm_provider == "offline":
        if given:
            sys.exit(
                f"{' and '.join(given)} {'are' if len(given) > 1 else 'is'} set but LLM_PROVIDER is not: add LLM_PROVIDER=openai "
                f"to use that endpoint, or unset {' and '.join(given)} to run on the offline model."
            )
        return "offline (the built-in deterministic model: no network, no key)"
    missing = [name for name in ("LLM_API_KEY", "LLM_MODEL") if name not in given]
    if missing:
        sys.exit(
            f"LLM_PROVIDER=openai needs {' and '.join(missing)} as well (and LLM_BASE_URL unless the endpoint is OpenAI's): "
            "set them, or unset LLM_PROVIDER to run on the offline model."
        )
    return f"{settings.llm_model} at {urlsplit(settings.llm_base_url).netloc or settings.llm_base_url} (OpenAI-compatible)"


def runtime_dir() -> None:
    """pgserver keeps its lock in the XDG runtime folder; without XDG_RUNTIME_DIR (containers, ssh
    without a login session) platformdirs falls back to /tmp with a warning. Name a private one."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    folder = RUN_DIR / "runtime"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.environ["XDG_RUNTIME_DIR"] = str(folder)


def database_url(folder: Path = RUN_DIR / "pgdata") -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    runtime_dir()
    import pgserver

    # pgserver logs a failure with the whole server log; the sentence below quotes what this start added.
    logging.getLogger("pgserver").setLevel(logging.CRITICAL)
    server_log = folder / "log"
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        logged_before = server_log.stat().st_size if server_log.exists() else 0
        server = pgserver.get_server(folder, cleanup_mode="stop")
        if "multyworkemon" not in server.psql("SELECT datname FROM pg_database;"):
            server.psql("CREATE DATABASE multyworkemon;")
    except (OSError, subprocess.SubprocessError, RuntimeError, AssertionError) as exc:
        raise SystemExit(
            f"PostgreSQL could not start in {_shown(folder)}: {_server_complaint(server_log, logged_before) or exc} "
            f"(its log: {_shown(server_log)}; move the folder away to start with an empty database)."
        ) from None
    return server.get_uri("multyworkemon")


def _server_complaint(server_log: Path, offset: int) -> str:
    """The server's own reason: the last FATAL line it logged during this start, else its last line."""
    try:
        with server_log.open("rb") as file:
            file.seek(offset)
            lines = [line.strip() for line in file.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    fatal = [line.split("FATAL:", 1)[1].strip() for line in lines if "FATAL:" in line]
    return fatal[-1] if fatal else lines[-1].removeprefix("postgres: ") if lines else ""


def system_env(dsn: str, services: list[Service] | None = None) -> dict[str, str]:
    """The environment every service gets (the benchmark starts the system with the same one)."""
    urls = {service.module: service.url for service in services or [Service(*row) for row in SERVICES]}
    return {
        **os.environ,
        "LLM_PROVIDER": os.environ.get("LLM_PROVIDER", "offline"),
        "DATABASE_URL": dsn,
        "USERS_FILE": os.environ.get("USERS_FILE", str(ROOT / "services/ai-secretary/users.example.yaml")),
        "KNOWLEDGE_DIR": os.environ.get("KNOWLEDGE_DIR", str(ROOT / "services/ai-systemanalitic/knowledge")),
        "GUESSER_URL": urls.get("ai_guesser", ""),
        "ANALYST_URL": urls.get("ai_systemanalitic", ""),
        "SECRETARY_URL": urls.get("ai_secretary", ""),
        "PYTHONUNBUFFERED": "1",
    }


def start(service: Service, env: dict[str, str]) -> None:
    # stdout is this terminal (or pipe) itself, so each service picks its log format as it would
    # alone; stderr (tracebacks, anything not logged) comes back here to get the service's name.
    # Its own process group: Ctrl-C reaches this script only, which stops the services one by one.
    service.process = subprocess.Popen(
        [sys.executable, "-m", service.module],
        env={**env, "PORT": str(service.port)},
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        process_group=0,
    )
    threading.Thread(target=_relay, args=(service.name, service.process.stderr), daemon=True).start()


def _relay(name: str, pipe) -> None:
    label = service_label(name, use_colors(sys.stderr))
    for line in pipe:
        sys.stderr.write(f"{label} {line.decode('utf-8', 'replace').rstrip()}\n")
        sys.stderr.flush()


def wait_ready(service: Service, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            sys.exit(f"{service.name} stopped while starting (exit code {service.process.returncode}); its lines above say why.")
        try:
            with urllib.request.urlopen(f"{service.url}/health/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"{service.name} was not ready on port {service.port} after {timeout:.0f} s; see {service.url}/health for what it waits for.")


def stop(services: list[Service]) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
    running = [service for service in reversed(services) if service.process and service.process.poll() is None]
    for service in running:
        service.process.send_signal(signal.SIGTERM)
    for service in running:
        try:
            service.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            service.process.kill()
            service.process.wait()


def document_count(analyst: Service | None, token: str) -> str:
    if analyst is None:
        return "unknown (the analyst is not built)"
    request = urllib.request.Request(f"{analyst.url}/knowledge/documents?limit=1", headers={SERVICE_TOKEN_HEADER: token})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            total = json.load(response)["total"]
    except (OSError, ValueError, KeyError) as exc:
        return f"unknown (the analyst did not say: {exc})"
    folder = _shown(Path(os.environ.get("KNOWLEDGE_DIR", ROOT / "services/ai-systemanalitic/knowledge")))
    return f"{total} document{'' if total == 1 else 's'} (the folder {folder}; list and add them at {analyst.url}/knowledge/documents)"


def identity_mode() -> str:
    # The communicator's own reading of its settings, so the summary says what it will do.
    from ai_communicator.settings import CommunicatorSettings

    return CommunicatorSettings().web_identity_mode


def summary(services: list[Service], model: str, token: Token, documents: str, embedded_database: bool) -> tuple[str, dict[str, str]]:
    """The block a person reads once everything is ready, and the same facts as log labels."""
    by_name = {service.name: service for service in services}
    web = f"{by_name['ai-communicator'].url}/" if "ai-communicator" in by_name else "not built"
    secretary = by_name.get("ai-secretary")
    stopping = "the services and PostgreSQL" if embedded_database else "the services (your DATABASE_URL's server keeps running)"
    rows = "\n".join(f"    {s.name:<18} {s.url + '/oas':<30} {s.url + '/health':<33} {s.url}/metrics" for s in services)
    curl = (
        f"    curl -s -H \"{SERVICE_TOKEN_HEADER}: {token.shell}\" {secretary.url}/analyze-request -G \\\n"
        "      --data-urlencode channel=direct --data-urlencode username=smirnovanton \\\n"
        f"      --data-urlencode 'request={EXAMPLE_REQUEST}'\n"
        if secretary
        else ""
    )
    rule = "─" * 100
    block = (
        f"{rule}\n"
        "  MultyWorkemon is running.\n\n"
        f"  web chat        {web}\n"
        f"  identity        {identity_mode()}\n"
        f"  LLM             {model}\n"
        f"  knowledge base  {documents}\n"
        f"  service token   {token.where}\n\n"
        f"    {'service':<18} {'API docs':<30} {'health':<33} metrics\n{rows}\n\n"
        f"  Try the API (every service but the web chat wants the token in {SERVICE_TOKEN_HEADER}):\n{curl}\n"
        f"  Ctrl-C stops {stopping}.\n"
        f"{rule}"
    )
    labels = {
        "web_chat": web, "identity": identity_mode(), "llm": model, "knowledge_base": documents,
        "service_token": token.where, "stop": f"SIGINT or SIGTERM stops {stopping}",
        **{service.name: service.url for service in services},
    }
    return block, labels


def main() -> None:
    try:
        chosen = log_format()
    except ValueError as exc:
        sys.exit(f"{exc}.")
    setup_logging(LAUNCHER, "local", os.environ.get("LOG_LEVEL", "info"), chosen)
    # SIGTERM and a closed terminal stop everything the way Ctrl-C does (through `finally` below).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.default_int_handler)
    services = planned_services()
    token = service_token()
    model = model_in_use(token.value)
    refuse_taken_ports(services, os.environ.get("HOST", "0.0.0.0"))
    try:
        embedded = not os.environ.get("DATABASE_URL")
        dsn = database_url()
        if embedded:
            log.info("PostgreSQL ready", labels={"data": _shown(RUN_DIR / "pgdata")})
        env = {**system_env(dsn, services), "SERVICE_TOKEN": token.value}
        for service in services:
            start(service, env)
            wait_ready(service)
        analyst = next((s for s in services if s.name == "ai-systemanalitic"), None)
        block, labels = summary(services, model, token, document_count(analyst, token.value), embedded)
        if chosen == "console":
            print(block, flush=True)
        else:
            # stdout stays one JSON object per line; the person (if any) reads the block on stderr.
            log.info("MultyWorkemon is running", labels=labels)
            print(block, file=sys.stderr, flush=True)
        while True:
            for service in services:
                if service.process.poll() is not None:
                    sys.exit(f"{service.name} exited with code {service.process.returncode}; the others were stopped.")
            time.sleep(0.5)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        stop(services)


if __name__ == "__main__":
    main()
