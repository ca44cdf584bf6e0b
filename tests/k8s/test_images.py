"""The service images: what the Dockerfiles promise, their dependency steps replayed for real with
uv from the lock file, and the dev entrypoint (k8s/dev/reload.py) driving real processes.

No Docker engine here, so no image is built; the build steps that matter (uv sync from uv.lock into
a venv that runs the service module) are run as the Dockerfile writes them."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import ROOT, SERVICES

SECRET_WORDS = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|DATABASE_URL)", re.I)


def dockerfile(name: str) -> str:
    return (ROOT / "services" / name / "Dockerfile").read_text()


def stages(text: str) -> dict[str, str]:
    parts = re.split(r"^FROM (\S+) AS (\S+)$", text, flags=re.M)
    return {parts[i + 1]: parts[i + 2] for i in range(1, len(parts), 3)}


def instructions(stage: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for line in stage.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [tuple(line.split(" ", 1)) for line in lines]


@pytest.mark.parametrize("name", list(SERVICES))
def test_dockerfile_promises(name):
    module, port = SERVICES[name]
    text = dockerfile(name)
    found = stages(text)
    assert list(found) == ["builder", "dev-venv", "dev", "runtime-venv", "runtime"], "runtime must stay the last stage"
    runtime = dict(instructions(found["runtime"]))
    assert runtime["USER"] == "10001:10001"
    assert json.loads(runtime["ENTRYPOINT"]) == ["python", "-m", module], "exec form, python is PID 1"
    assert "PYTHONUNBUFFERED=1" in runtime["ENV"] and f"PORT={port}" in runtime["ENV"]
    assert runtime["EXPOSE"] == str(port)
    assert "uv" not in runtime.get("RUN", ""), "no uv or build tools in the shipped image"
    sync = dict(instructions(found["runtime-venv"]))["RUN"]
    for flag in ("--frozen", "--no-dev", "--no-editable", f"--package {name}"):
        assert flag in sync
    dev = dict(instructions(found["dev"]))
    assert dev["USER"] == "10001:10001"
    assert json.loads(dev["ENTRYPOINT"])[-3:] == ["python", "-m", module]
    for instruction, args in instructions(text.split("\nFROM", 1)[1]):
        if instruction in ("ARG", "ENV"):
            assert not SECRET_WORDS.search(args), f"{instruction} {args}: no secrets in images"


def test_the_four_dockerfiles_differ_only_in_the_service():
    def neutral(name):
        module, port = SERVICES[name]
        return dockerfile(name).replace(name, "SERVICE").replace(module, "MODULE").replace(str(port), "PORT")
    texts = {neutral(name) for name in SERVICES}
    assert len(texts) == 1


def test_dockerignore_keeps_what_the_dockerfiles_copy():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def excluded(path: str) -> bool:
        # Docker's rule: the last matching pattern wins; a path is also matched through its parents.
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            glob = pattern.lstrip("!").rstrip("/")
            parts = path.split("/")
            prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
            regex = "^" + re.escape(glob).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*") + "$"
            if any(re.match(regex, prefix) for prefix in prefixes):
                result = not negate
        return result

    for name in SERVICES:
        for instruction, args in instructions(dockerfile(name)):
            if instruction == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
                    for path in [source] + [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]:
                        assert not excluded(path), f".dockerignore drops {path}, which {name}'s Dockerfile copies"
    assert excluded(".venv/bin/python") and excluded(".git/config") and excluded("tests/k8s/conftest.py")


@pytest.mark.parametrize("name", list(SERVICES))
def test_dependency_steps_build_a_venv_that_runs_the_service(name, tmp_path):
    """Replays the builder stages' COPY and `uv sync` steps (as written) in a scratch context."""
    module, _ = SERVICES[name]
    uv = shutil.which("uv")
    assert uv, "uv is what the images install with"
    found = stages(dockerfile(name))
    context, venv = tmp_path / "src", tmp_path / "venv"
    context.mkdir()
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never",
           "UV_PYTHON": sys.executable, "VIRTUAL_ENV": ""}
    for stage in ("builder", "runtime-venv"):
        for instruction, args in instructions(found[stage]):
            if instruction == "COPY":
                *sources, target = args.split()
                for source in sources:
                    destination = context / target / Path(source).name if target.endswith("/") or target == "./" else context / target
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    if (ROOT / source).is_dir():
                        shutil.copytree(ROOT / source, destination, dirs_exist_ok=True,
                                        ignore=shutil.ignore_patterns("__pycache__"))
                    else:
                        shutil.copy2(ROOT / source, destination)
            elif instruction == "RUN" and "uv sync" in args:
                command = shlex.split(re.sub(r"--mount=\S+", "", args))
                subprocess.run(command, cwd=context, env=env, check=True, capture_output=True, text=True, timeout=300)
    # The image's python, outside the workspace: the service package and its dependencies import.
    probe = subprocess.run([str(venv / "bin/python"), "-c", f"import {module}, multyworkemon_common.app"],
                           capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=60)
    assert probe.returncode == 0, probe.stderr
    installed = {p.name for p in (venv / "lib").glob("python*/site-packages/*")}
    assert module in installed and "multyworkemon_common" in installed
    # Non-editable: the code is inside the venv, nothing points back at the sources.
    assert not list((venv / "lib").glob("python*/site-packages/*.pth")) or not any(
        str(context) in p.read_text() for p in (venv / "lib").glob("python*/site-packages/*.pth"))
    assert not any("pytest" in entry for entry in installed), "dev dependencies stay out of the image"


RELOAD = ROOT / "k8s/dev/reload.py"
CHILD = """
import os, signal, sys, time, pathlib
out = pathlib.Path(sys.argv[1])
out.joinpath(f"start-{os.getpid()}").touch()
def term(*_):
    out.joinpath(f"term-{os.getpid()}").touch()
    sys.exit(3)
signal.signal(signal.SIGTERM, term)
while True:
    time.sleep(0.05)
"""


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_reload_restarts_on_a_change_and_passes_sigterm(tmp_path):
    watched, out = tmp_path / "src", tmp_path / "out"
    watched.mkdir()
    out.mkdir()
    (watched / "app.py").write_text("x = 1\n")
    child = tmp_path / "child.py"
    child.write_text(CHILD)
    proc = subprocess.Popen([sys.executable, str(RELOAD), "--watch", str(watched), "--interval", "0.1", "--grace", "5",
                             "--", sys.executable, str(child), str(out)], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_for(lambda: len(list(out.glob("start-*"))) == 1)
        time.sleep(0.3)
        (watched / "app.py").write_text("x = 2\n")
        os.utime(watched / "app.py", (time.time() + 5, time.time() + 5))
        assert wait_for(lambda: len(list(out.glob("start-*"))) == 2), "no restart after the change"
        assert len(list(out.glob("term-*"))) == 1, "the old process got SIGTERM"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 3, "exits with the service's own code"
        assert len(list(out.glob("term-*"))) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "restarting" in proc.stderr.read()


def test_reload_ends_when_the_service_ends(tmp_path):
    result = subprocess.run([sys.executable, str(RELOAD), "--watch", str(tmp_path), "--",
                             sys.executable, "-c", "import sys; sys.exit(7)"], timeout=30)
    assert result.returncode == 7
