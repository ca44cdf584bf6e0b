"""The services as real subprocesses (as `make run` starts them), for tests of signals and captured logs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from support.stack import free_port


@dataclass
class ServiceProcess:
    module: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        """The exit code, waiting without blocking the loop (servers in this process must keep answering)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.process.poll() is None:
            if asyncio.get_running_loop().time() > deadline:
                self.process.kill()
                raise TimeoutError(f"{self.module} did not exit within {timeout} s")
            await asyncio.sleep(0.05)
        return self.process.returncode


async def start_service(module: str, env: dict[str, str], log_dir: Path) -> ServiceProcess:
    port = free_port()
    log_path = log_dir / f"{module}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", module],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env, "PORT": str(port), "HOST": "127.0.0.1"},
            stdout=log, stderr=subprocess.STDOUT,
        )
    service = ServiceProcess(module, port, process, log_path)
    await wait_ready(service)
    return service


async def wait_ready(service: ServiceProcess, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.module} exited with {service.process.returncode}:\n{service.log()[-3000:]}")
            try:
                async with session.get(f"{service.url}/health/ready") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{service.module} not ready:\n{service.log()[-3000:]}")
            await asyncio.sleep(0.05)
