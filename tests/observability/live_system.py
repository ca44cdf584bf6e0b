"""The services as real processes (as `make run` starts them), a real Prometheus scraping them and a
real Alertmanager receiving its alerts."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import aiohttp
import yaml

from observability_files import ROOT, RULES
from support.stack import free_port


def _end(process: subprocess.Popen | None, how: signal.Signals, timeout: float) -> None:
    """Stop a process we started: `how` first, SIGKILL when it has not exited within `timeout`."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(how)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def wait_answering(process: subprocess.Popen, url: str, name: str, log: Path, timeout: float) -> None:
    """Until `url` answers 200; fails at once, with the end of its log, if the process exits."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} not ready after {timeout:.0f}s: {log.read_text()[-2000:]}")
            await asyncio.sleep(0.1)


async def eventually(what: str, check, timeout: float = 20.0):
    """Awaits `check()` every 0.1 s until it returns something true, and returns that."""
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)
    return result


def rules_firing_at_once(folder: Path) -> Path:
    """The shipped rule file with every `for` taken out, nothing else changed: each alert fires at
    the first evaluation that sees its condition, so a test sees in seconds what a cluster sees
    in minutes (the `for` durations themselves are promtool's to test)."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path = folder / "rules-firing-at-once.yaml"
    path.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return path


@dataclass
class ServiceProcess:
    name: str
    module: str
    env: dict[str, str]
    folder: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.folder / f"{self.name}.stdout"

    @property
    def stderr_path(self) -> Path:
        return self.folder / f"{self.name}.stderr"

    def start(self) -> None:
        env = {**os.environ, **self.env, "PORT": str(self.port), "HOST": "127.0.0.1", "PYTHONUNBUFFERED": "1"}
        with self.stdout_path.open("wb") as stdout, self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen([sys.executable, "-m", self.module], env=env, cwd=ROOT, stdout=stdout, stderr=stderr)

    async def wait_ready(self, timeout: float = 90.0) -> None:  # a loaded 2-core machine starts aiogram slowly
        await wait_answering(self.process, f"{self.url}/health/ready", self.name, self.stdout_path, timeout)

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod: the service drains and logs its shutdown."""
        _end(self.process, signal.SIGTERM, 30)


def start_the_four_services(folder: Path, database_url: str, *, log_level: str = "info",
                            analyst: dict[str, str] | None = None, communicator: dict[str, str] | None = None) -> dict[str, ServiceProcess]:
    """The four services wired to each other as `make run` wires them, on the offline model unless
    `analyst` says otherwise; `communicator` adds its channels' settings. Started, not yet ready."""
    common = {"LOG_LEVEL": log_level, "SECRETS_DIR": str(folder / "no-secrets"), "DATABASE_URL": database_url}
    guesser = ServiceProcess("ai-guesser", "ai_guesser", {**common, "LLM_PROVIDER": "offline"}, folder)
    analyst_process = ServiceProcess("ai-systemanalitic", "ai_systemanalitic", {**common, "LLM_PROVIDER": "offline", **(analyst or {})}, folder)
    secretary = ServiceProcess("ai-secretary", "ai_secretary", {
        **common, "GUESSER_URL": guesser.url, "ANALYST_URL": analyst_process.url,
        "USERS_FILE": str(ROOT / "services/ai-secretary/users.example.yaml"),
    }, folder)
    communicator_process = ServiceProcess("ai-communicator", "ai_communicator", {**common, "SECRETARY_URL": secretary.url, **(communicator or {})}, folder)
    services = {s.name: s for s in (guesser, analyst_process, secretary, communicator_process)}
    for service in services.values():
        service.start()
    return services


@dataclass
class _Server:
    """A server binary started on a free loopback port, its output in `folder`/<name>.log."""

    name: ClassVar[str]
    folder: Path
    port: int = field(default_factory=free_port, kw_only=True)
    process: subprocess.Popen | None = field(default=None, kw_only=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def _launch(self, binary: str, config: dict, *flags: str) -> None:
        """Writes `config` (JSON is YAML) and starts `binary` on it, listening on loopback only."""
        config_path = self.folder / f"{self.name}.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [binary, f"--config.file={config_path}", f"--web.listen-address={self.address}", "--log.level=warn", *flags],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def stop(self) -> None:
        _end(self.process, signal.SIGTERM, 15)


@dataclass
class Prometheus(_Server):
    """Debian's prometheus, scraping the given targets every second and evaluating a rule file
    (ours unless told), sending its alerts to an Alertmanager when given one."""

    name: ClassVar[str] = "prometheus"
    targets: dict[str, str]  # job name -> host:port
    rules: Path = RULES
    alertmanager: str | None = None  # host:port

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run scripts/install-deps.sh --test (Debian package prometheus)"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(self.rules)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in self.targets.items()
            ],
        }
        if self.alertmanager:
            config["alerting"] = {"alertmanagers": [{"api_version": "v2", "static_configs": [{"targets": [self.alertmanager]}]}]}
        self._launch(binary, config, f"--storage.tsdb.path={self.folder / 'tsdb'}")

    async def wait_scraping(self, timeout: float = 30.0) -> None:
        """Ready, and every target scraped successfully at least twice."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                targets = (await self.api("targets"))["activeTargets"]
                up = {t["labels"]["job"] for t in targets if t["health"] == "up"}
                if up == set(self.targets):
                    scrapes = await self.query('count_over_time(up[1m])')
                    if len(scrapes) == len(self.targets) and all(float(s["value"][1]) >= 2 for s in scrapes):
                        return
            except (aiohttp.ClientError, AssertionError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus targets not all up: {self.log_path.read_text()[-2000:]}")
            await asyncio.sleep(0.25)

    async def api(self, path: str, **params: Any) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v1/{path}", params=params) as response:
                body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def query(self, expr: str) -> list[dict]:
        """An instant query; raises with Prometheus' own message when the PromQL is invalid."""
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{self.url}/api/v1/query", data={"query": expr}) as response:
                body = await response.json()
        assert body["status"] == "success", f"{expr}\n  -> {body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"]

    async def alerts(self, name: str) -> list[dict]:
        """The alerts of one rule, pending or firing, as Prometheus holds them."""
        return [a for a in (await self.api("alerts"))["alerts"] if a["labels"]["alertname"] == name]


@dataclass
class Alertmanager(_Server):
    """Debian's prometheus-alertmanager with the given configuration, on loopback, without its
    cluster port (no gossip with anything)."""

    name: ClassVar[str] = "alertmanager"
    config: dict

    def start(self) -> None:
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        assert binary, "alertmanager is missing: run scripts/install-deps.sh --test (Debian package prometheus-alertmanager)"
        # An empty cluster address turns the HA gossip off: nothing listens beyond loopback.
        self._launch(binary, self.config, f"--storage.path={self.folder / 'alertmanager'}", "--cluster.listen-address=")

    async def wait_ready(self, timeout: float = 20.0) -> None:
        await wait_answering(self.process, f"{self.url}/-/ready", self.name, self.log_path, timeout)

    async def alerts(self, *, active: bool = True, inhibited: bool = True, silenced: bool = True) -> list[dict]:
        """GET /api/v2/alerts: the alerts Alertmanager holds, each with status.state and status.inhibitedBy."""
        params = {"active": active, "inhibited": inhibited, "silenced": silenced, "unprocessed": active}
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{self.url}/api/v2/alerts", params={k: str(v).lower() for k, v in params.items()}) as response:
                assert response.status == 200, await response.text()
                return await response.json()
