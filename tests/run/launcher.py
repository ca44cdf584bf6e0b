"""`make run`'s launcher (scripts/run_local.py) as a person or a CI job starts it: on a pseudo-terminal
or on pipes, in its own session, on free ports and a temporary RUN_DIR, so parallel runs never meet."""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import psutil

from support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts/run_local.py"
SERVICES = {"ai-guesser": "AI_GUESSER_PORT", "ai-systemanalitic": "AI_SYSTEMANALITIC_PORT",
            "ai-secretary": "AI_SECRETARY_PORT", "ai-communicator": "AI_COMMUNICATOR_PORT"}
# What a newcomer's shell would not have set; each test adds what it is about.
CLEARED = ("LOG_FORMAT", "NO_COLOR", "SERVICE_TOKEN", "SERVICE_TOKEN_FILE", "DATABASE_URL", "XDG_RUNTIME_DIR",
           "WEB_TRUSTED_PROXIES", "WEB_IDENTITY_HEADER", "KNOWLEDGE_DIR", "USERS_FILE", "SECRETS_DIR")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
SUMMARY = re.compile(r"^─+\n  MultyWorkemon is running\..*?\n  Ctrl-C stops [^\n]*\n─+$", re.S | re.M)


def plain(text: str) -> str:
    return ANSI.sub("", text).replace("\r\n", "\n")


class Captured:
    """A command on a pseudo-terminal (stdout and stderr both on it) or on two pipes, in its own session."""

    def __init__(self, env: dict[str, str], *, terminal: bool) -> None:
        self.env = env
        self.terminal = terminal
        self.raw = {"out": b"", "err": b""}
        self._readers: list[threading.Thread] = []
        self.process: subprocess.Popen | None = None
        self._master: int | None = None

    def start(self, args: list[str]) -> None:
        if self.terminal:
            self._master, slave = os.openpty()
            self.process = subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                # The terminal becomes the session's controlling terminal, so ^C is a real Ctrl-C.
                preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
            )
            os.close(slave)
            self._read("out", lambda: os.read(self._master, 65536))
        else:
            self.process = subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )
            self._read("out", lambda: self.process.stdout.read1(65536))
            self._read("err", lambda: self.process.stderr.read1(65536))

    def _read(self, key: str, read) -> None:
        def loop() -> None:
            while True:
                try:
                    chunk = read()
                except OSError:  # the pseudo-terminal's last writer is gone
                    return
                if not chunk:
                    return
                self.raw[key] += chunk

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        self._readers.append(thread)

    def text(self, key: str = "out") -> str:
        return plain(self.raw[key].decode("utf-8", "replace"))

    def wait(self, timeout: float = 90.0) -> int:
        code = self.process.wait(timeout=timeout)
        for thread in self._readers:
            thread.join(timeout=10)
        return code

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self._master is not None:
            os.close(self._master)
            self._master = None


class Launcher(Captured):
    def __init__(self, run_dir: Path, *, terminal: bool, **env: str) -> None:
        self.run_dir = run_dir
        self.ports = {name: free_port() for name in SERVICES}
        base = {k: v for k, v in os.environ.items() if k not in CLEARED and not k.startswith("LLM_")}
        super().__init__(
            {**base, "RUN_DIR": str(run_dir), "HOST": "127.0.0.1",
             **{variable: str(self.ports[name]) for name, variable in SERVICES.items()}, **env},
            terminal=terminal,
        )

    def start(self) -> Launcher:
        super().start([sys.executable, str(SCRIPT)])
        return self

    def wait_for_summary(self, timeout: float = 240.0) -> str:
        """The summary block, once printed (to the terminal, or to stderr beside the JSON on stdout)."""
        key = "out" if self.terminal else "err"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.text(key)
            if match := SUMMARY.search(text):
                return match.group()
            if self.process.poll() is not None:
                raise AssertionError(f"the launcher exited with {self.process.returncode}:\n{self.text()}\n{self.text('err')}")
            time.sleep(0.2)
        raise AssertionError(f"no summary after {timeout} s:\n{self.text()}\n{self.text('err')}")

    def ctrl_c(self) -> None:
        os.write(self._master, b"\x03")

    def run(self, timeout: float = 120.0) -> tuple[int, str, str]:
        """Start, wait for the exit; answer the exit code, stdout and stderr."""
        self.start()
        return self.wait(timeout), self.text("out"), self.text("err")

    def leftovers(self) -> list[psutil.Process]:
        """Processes of the launcher's session and the embedded PostgreSQL (its own session) still running."""
        pgdata = str(self.run_dir / "pgdata")
        found = []
        for process in psutil.process_iter(["cmdline"]):
            try:
                if process.pid != os.getpid() and (
                    os.getsid(process.pid) == self.process.pid or pgdata in " ".join(process.info["cmdline"] or ())
                ):
                    found.append(process)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    def assert_all_gone(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (left := self.leftovers()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left, f"still running: {[' '.join(p.cmdline()) for p in left]}"

    def close(self) -> None:
        """Whatever a failed test left: stop it, so nothing outlives the test."""
        super().close()
        if self.process is not None:
            for process in self.leftovers():
                try:
                    process.kill()
                except psutil.Error:
                    pass
