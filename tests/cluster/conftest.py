"""The real thing: images built from services/Dockerfile, a single-node Kubernetes from
scripts/cluster/ (no Docker, no registry), and the compose stack under podman. Slow (minutes; the
first run on a machine also builds Kubernetes from source), so every test here is marked
`cluster`: `pytest -m 'not cluster'` leaves them out in the inner loop; `make test` and CI run them.

What each test saw (commands, answers, counts, timings) is printed at the end of the run, so the
CI log shows it even when everything passes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from .host import Snapshot

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "cluster"
VAGUE = "Я хочу получать аналитику о операциях наших кошельков"
ANSWER = "Меня интересуют операции авторизации за последний месяц"
REPORT: list[str] = []


def report(line: str) -> None:
    REPORT.append(line)


def pytest_terminal_summary(terminalreporter):
    if REPORT:
        terminalreporter.section("what the cluster and compose tests saw")
        for line in REPORT:
            terminalreporter.write_line(line)


def settings() -> dict[str, str]:
    """The names scripts/cluster/env.sh defines: one place for versions and paths."""
    names = ("REPO", "CACHE", "STATE", "KUBE_BIN", "KUBECONFIG", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF",
             "IMAGE_TAG", "POSTGRES_IMAGE", "KUBE_VERSION", "NODE_NAME")
    script = f"source {SCRIPTS / 'env.sh'}; " + "; ".join(f'echo "{name}=${name}"' for name in names)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


ENV = settings()


def run(args: list[str], timeout: float, log: str | None = None, check: bool = True, env: dict | None = None,
        **kwargs) -> subprocess.CompletedProcess:
    """A command with the scripts' environment; its output in logs/<log>.log when named, else returned."""
    env = {**(env or os.environ), **{k: ENV[k] for k in ("KUBECONFIG", "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF")}}
    if log:
        path = Path(ENV["STATE"]) / "logs" / f"{log}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as out:
            result = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env, **kwargs)
        if check and result.returncode:
            tail = "\n".join(path.read_text().splitlines()[-40:])
            raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}; {path} ends:\n{tail}")
        return result
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env, **kwargs)
    if check and result.returncode:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def images() -> dict[str, str]:
    """Kubernetes, CoreDNS and every image, each only when its cache entry is missing."""
    started = time.monotonic()
    run([str(SCRIPTS / "build.sh"), "all"], timeout=75 * 60, log="build")
    report(f"build.sh (Go binaries, images; cached ones skipped): {time.monotonic() - started:.0f} s")
    images = {name: f"localhost/multyworkemon/{name}:{ENV['IMAGE_TAG']}"
              for name in ("ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")}
    return {**images, "postgres": ENV["POSTGRES_IMAGE"]}


def http(url: str, params: dict | None = None, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    if params:
        url += "?" + urllib.parse.urlencode(params)
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as error:
        body = error.read()
        try:
            return error.code, json.loads(body)
        except ValueError:
            return error.code, {"raw": body.decode(errors="replace")}


def wait_until(predicate, timeout: float, interval: float = 1.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, AssertionError, ValueError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(interval)


def readme_conversation(base: str, token: str, username: str = "smirnovanton") -> tuple[dict, dict]:
    """The README's two requests: a vague one gets a clarifying question, the answer to it gets the
    answer with links to the knowledge base."""
    headers = {"X-Service-Token": token}
    params = {"channel": "direct", "username": username}
    status, first = http(f"{base}/analyze-request", {**params, "request": VAGUE}, headers)
    assert status == 200, first
    assert first["is_enough"] is False and first["action"] == "уточнить" and first["question"], first
    status, second = http(f"{base}/analyze-request", {**params, "request": ANSWER}, headers)
    assert status == 200, second
    assert second["is_enough"] is True and second["conversation_id"] == first["conversation_id"], second
    assert second["sources"] and all(source["url"].startswith("http") for source in second["sources"]), second
    assert "[1]" in second["response"], "the answer cites its sources"
    return first, second


class Kubernetes:
    """kubectl and helm against the cluster scripts/cluster/up.sh started."""

    def __init__(self, helm: str, before: Snapshot):
        self.kubectl_path = str(Path(ENV["KUBE_BIN"]) / "kubectl")
        self.helm_path = helm
        self.before = before

    def down(self) -> dict[str, list[str]]:
        """scripts/cluster/down.sh, then what it left on the host (empty: nothing)."""
        return down_and_check(self.before, "cluster", [str(SCRIPTS / "down.sh")])

    def kubectl(self, *args: str, timeout: float = 120, **kwargs) -> str:
        return run([self.kubectl_path, *args], timeout=timeout, **kwargs).stdout

    def json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def helm(self, *args: str, timeout: float = 600) -> str:
        return run([self.helm_path, *args], timeout=timeout).stdout

    @contextlib.contextmanager
    def port_forward(self, namespace: str, target: str, port: int):
        """kubectl port-forward on 127.0.0.1 (a free port); yields the base URL."""
        proc = subprocess.Popen([self.kubectl_path, "-n", namespace, "port-forward", "--address", "127.0.0.1",
                                 target, f":{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "KUBECONFIG": ENV["KUBECONFIG"]})
        try:
            line = proc.stdout.readline()
            found = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
            assert found, f"port-forward said {line!r} {proc.stderr.read() if proc.poll() is not None else ''}"
            yield f"http://127.0.0.1:{found.group(1)}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs_tail(self) -> str:
        """The component logs' last lines, for a failure message."""
        parts = []
        for log in sorted((Path(ENV["STATE"]) / "logs").glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def down_and_check(before: Snapshot, what: str, down: list[str]) -> dict[str, list[str]]:
    """Runs the teardown command, then says what is on the host that was not there before
    (giving processes and the kernel a few seconds to finish going)."""
    run(down, timeout=300, log=f"{what}-down", check=False)
    deadline = time.monotonic() + 20
    while (left := Snapshot.take().left_since(before)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


@pytest.fixture(scope="module")
def kubernetes(images) -> Kubernetes:
    """A cluster for the module. Whatever happens, the finalizer takes it down (down.sh) and fails
    the run if anything of it is left on the host."""
    helm = shutil.which("helm", path=str(ROOT / ".bin")) or shutil.which("helm")
    assert helm, "helm is missing: run scripts/install-deps.sh --test"
    cluster = Kubernetes(helm, before=Snapshot.take())
    started = time.monotonic()
    try:
        run([str(SCRIPTS / "up.sh")], timeout=600, log="up")
        report(f"up.sh (etcd, containerd, Kubernetes v{ENV['KUBE_VERSION']}, CoreDNS): {time.monotonic() - started:.0f} s")
        yield cluster
    finally:
        left = cluster.down()
        assert not left, f"the cluster left on the host: {left}"
