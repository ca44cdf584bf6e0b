"""The services as real processes (as `make run` starts them) and a real Prometheus scraping them."""

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
from typing import Any

import aiohttp

from observability_files import ROOT, RULES
from support.stack import free_port


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

    async def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.stderr_path.read_text()[-2000:]}")
                try:
                    async with session.get(f"{self.url}/health/ready") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s: {self.stdout_path.read_text()[-2000:]}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod: the service drains and logs its shutdown."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class Prometheus:
    """Debian's prometheus, scraping the given targets every second and evaluating our rule file."""

    folder: Path
    targets: dict[str, str]  # job name -> host:port
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.folder / "prometheus.log"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing: run scripts/install-deps.sh --test (Debian package prometheus)"
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in self.targets.items()
            ],
        }
        config_path = self.folder / "prometheus.yml"
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")  # JSON is YAML
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_path}",
                    f"--storage.tsdb.path={self.folder / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

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

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
