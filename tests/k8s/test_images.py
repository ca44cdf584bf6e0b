"""The service images: what services/Dockerfile promises, the build args skaffold gives it, its
dependency steps replayed for real with uv from the lock file, the entry module it starts
(multyworkemon_common.serve) and the dev entrypoint (k8s/dev/reload.py) driving real processes.

No Docker engine here, so no image is built; the build steps that matter (uv sync from uv.lock into
a venv that runs the service module) are run as the Dockerfile writes them, with the build args
substituted."""

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
import yaml

from .conftest import ROOT, SERVICES, chart_values

SECRET_WORDS = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|DATABASE_URL)", re.I)
DOCKERFILE = ROOT / "services" / "Dockerfile"
SERVE = ["python", "-m", "multyworkemon_common.serve"]


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def with_build_args(text: str, **args: str) -> str:
    """The text with ${NAME} of the given build args filled in, as the builder substitutes them."""
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


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


def declared(stage: str) -> list[str]:
    return [args.split("=", 1)[0] for instruction, args in instructions(stage) if instruction == "ARG"]


def test_dockerfile_promises():
    text = dockerfile()
    found = stages(text)
    assert list(found) == ["builder", "dev-venv", "dev", "runtime-venv", "runtime"], "runtime must stay the last stage"
    # A build arg is scoped to the stage that declares it: each stage using one declares it again.
    for name, stage in found.items():
        for arg in ("SERVICE", "PORT"):
            if "${" + arg + "}" in stage:
                assert arg in declared(stage), f"stage {name} uses ${{{arg}}} without ARG {arg}"
    runtime = dict(instructions(found["runtime"]))
    assert runtime["USER"] == "10001:10001"
    assert json.loads(runtime["ENTRYPOINT"]) == SERVE, "exec form, python is PID 1"
    env = runtime["ENV"].split()
    assert "PYTHONUNBUFFERED=1" in env and "PORT=${PORT}" in env and "SERVICE_PACKAGE=${SERVICE}" in env
    assert runtime["EXPOSE"] == "${PORT}"
    assert "uv" not in runtime.get("RUN", ""), "no uv or build tools in the shipped image"
    sync = dict(instructions(found["runtime-venv"]))["RUN"]
    for flag in ("--locked", "--no-dev", "--no-editable", "--package ${SERVICE}"):
        assert flag in sync
    # A stale uv.lock fails the build (--locked), it is never installed as is (--frozen).
    assert "--frozen" not in text and text.count("uv sync --locked") == 3
    # The published images' base is pinned by digest; a local build may still pass its own.
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M).group(1)
    assert re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    dev = dict(instructions(found["dev"]))
    assert dev["USER"] == "10001:10001"
    assert json.loads(dev["ENTRYPOINT"]) == ["python", "/app/reload.py", "--watch", "/src/services", "--", *SERVE]
    assert dev["ENV"].split() == env and dev["EXPOSE"] == "${PORT}"
    for instruction, args in instructions(text.split("\nFROM", 1)[1]):
        if instruction in ("ARG", "ENV"):
            assert not SECRET_WORDS.search(args), f"{instruction} {args}: no secrets in images"
    header = text.split("\nARG", 1)[0]
    assert "docker build -f services/Dockerfile --build-arg SERVICE=" in header and "--build-arg PORT=" in header


def test_skaffold_builds_each_service_with_its_own_build_args():
    """One Dockerfile, four images: the build args name each service's package and port, which are
    the ports its chart serves on."""
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    artifacts = {a["image"]: a["docker"] for a in skaffold["build"]["artifacts"]}
    assert set(artifacts) == {f"multyworkemon/{name}" for name in SERVICES}
    for name, (module, port) in SERVICES.items():
        docker = artifacts[f"multyworkemon/{name}"]
        assert (ROOT / docker["dockerfile"]) == DOCKERFILE
        # skaffold v4beta13: buildArgs is a map of strings.
        assert docker["buildArgs"] == {"SERVICE": name, "PORT": str(port)}
        assert (ROOT / "services" / name / "src" / module / "__main__.py").is_file()
        assert chart_values(name)["port"] == port, f"{name}: the chart's port is not the image's PORT"


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

    for name, (_, port) in SERVICES.items():
        for instruction, args in instructions(with_build_args(dockerfile(), SERVICE=name, PORT=str(port))):
            if instruction == "COPY" and "--from" not in args:
                for source in args.split()[:-1]:
                    assert (ROOT / source).exists(), f"{name}: COPY {source} does not exist"
                    for path in [source] + [str(p.relative_to(ROOT)) for p in (ROOT / source).rglob("*.py")]:
                        assert not excluded(path), f".dockerignore drops {path}, which {name}'s Dockerfile copies"
    assert excluded(".venv/bin/python") and excluded(".git/config") and excluded("tests/k8s/conftest.py")


def replay_builder_steps(name: str, tmp_path: Path, before_sync=None) -> Path:
    """Replays the builder stages' COPY and `uv sync` steps (as written) in a scratch context;
    `before_sync(context)` may change the copied files first. Returns the venv."""
    _, port = SERVICES[name]
    uv = shutil.which("uv")
    assert uv, "uv is what the images install with"
    found = stages(with_build_args(dockerfile(), SERVICE=name, PORT=str(port)))
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
                if before_sync:
                    before_sync(context)
                command = shlex.split(re.sub(r"--mount=\S+", "", args))
                subprocess.run(command, cwd=context, env=env, check=True, capture_output=True, text=True, timeout=300)
    return venv


def test_a_stale_lock_fails_the_build(tmp_path):
    """A dependency added to a pyproject.toml without `uv lock` stops the first `uv sync --locked`,
    of every image: each copies every workspace member's pyproject.toml."""
    def add_a_dependency(context: Path) -> None:
        pyproject = context / "services" / "ai-guesser" / "pyproject.toml"
        pyproject.write_text(pyproject.read_text().replace("dependencies = [", 'dependencies = [\n    "pyyaml",', 1))

    with pytest.raises(subprocess.CalledProcessError) as failed:
        replay_builder_steps("ai-secretary", tmp_path, before_sync=add_a_dependency)
    assert "needs to be updated, but `--locked` was provided" in failed.value.stderr, failed.value.stderr


@pytest.mark.parametrize("name", list(SERVICES))
def test_dependency_steps_build_a_venv_that_runs_the_service(name, tmp_path):
    module, _ = SERVICES[name]
    venv = replay_builder_steps(name, tmp_path)
    context = tmp_path / "src"
    # The image's python, outside the workspace: the service package and its dependencies import.
    # Every module of the service and of common imports: a dependency missing from a pyproject.toml
    # (present in the workspace's venv through another package) shows here, not in the pod.
    every_module = ("import importlib, pkgutil, sys\n"
                    "for package in sys.argv[1:]:\n"
                    "    for found in pkgutil.walk_packages(importlib.import_module(package).__path__, package + '.'):\n"
                    "        if not found.name.endswith('.__main__'):\n"
                    "            importlib.import_module(found.name)\n")
    probe = subprocess.run([str(venv / "bin/python"), "-c", every_module, module, "multyworkemon_common"],
                           capture_output=True, text=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]}, timeout=60)
    assert probe.returncode == 0, probe.stderr
    # The image's entrypoint in the image's venv: only this service is there to run.
    other = next(other for other in SERVICES if other != name)
    wrong = subprocess.run([str(venv / "bin/python"), "-m", "multyworkemon_common.serve"], capture_output=True, text=True,
                           cwd=tmp_path, env={"PATH": os.environ["PATH"], "SERVICE_PACKAGE": other}, timeout=60)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert f"SERVICE_PACKAGE='{other}'" in wrong.stderr
    installed = {p.name for p in (venv / "lib").glob("python*/site-packages/*")}
    assert module in installed and "multyworkemon_common" in installed
    # Non-editable: the code is inside the venv, nothing points back at the sources.
    assert not list((venv / "lib").glob("python*/site-packages/*.pth")) or not any(
        str(context) in p.read_text() for p in (venv / "lib").glob("python*/site-packages/*.pth"))
    assert not any("pytest" in entry for entry in installed), "dev dependencies stay out of the image"
    # The services speak the OpenAI wire themselves (llm/openai_wire.py); the library is only the tests' (18 MB per process).
    assert not any(entry.startswith(("openai", "httpx")) for entry in installed), "the openai client stays out of the image"


def serve(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """The images' entrypoint, `python -m multyworkemon_common.serve ARGS`, in the workspace's venv."""
    environment = {key: value for key, value in os.environ.items() if key != "SERVICE_PACKAGE"}
    return subprocess.run([sys.executable, "-m", "multyworkemon_common.serve", *args], capture_output=True, text=True,
                          cwd=cwd, env={**environment, **env}, timeout=120)


def test_serve_hands_the_arguments_to_the_service(tmp_path):
    """The service's own command line answers: its usage message and exit code come back unchanged."""
    usage = serve("load-knowledge", cwd=tmp_path, SERVICE_PACKAGE="ai-systemanalitic")
    assert usage.returncode == 1, usage.stderr
    assert usage.stderr.strip() == "usage: python -m ai_systemanalitic load-knowledge <folder of Markdown files>"
    unknown = serve("frobnicate", cwd=tmp_path, SERVICE_PACKAGE="ai-systemanalitic")
    assert unknown.returncode == 1 and "unknown command 'frobnicate'" in unknown.stderr, unknown.stderr


def test_serve_runs_the_service_in_its_own_process_with_argv_unchanged(tmp_path):
    """What `kubectl exec ... -- python -m multyworkemon_common.serve migrate` relies on: the same process (python stays PID 1),
    sys.argv[1:] as given, the module run as __main__, its exit code passed on."""
    package = tmp_path / "lib" / "ai_probe"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], 'name': __name__, 'file': sys.argv[0]}))\n"
        "sys.exit(5)\n")
    proc = subprocess.Popen([sys.executable, "-m", "multyworkemon_common.serve", "migrate", "--x", "a b"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            env={**os.environ, "SERVICE_PACKAGE": "ai-probe", "PYTHONPATH": str(tmp_path / "lib")})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    seen = json.loads(out)
    assert seen == {"pid": proc.pid, "argv": ["migrate", "--x", "a b"], "name": "__main__",
                    "file": str(package / "__main__.py")}


@pytest.mark.parametrize("package, message", [
    (None, "SERVICE_PACKAGE is not set"),
    ("", "SERVICE_PACKAGE is not set"),
    ("ai-nothing", "SERVICE_PACKAGE='ai-nothing': no installed service module 'ai_nothing'"),
    ("multyworkemon-common", "no installed service module 'multyworkemon_common' with a __main__"),
    ("../ai-guesser", "no installed service module '../ai_guesser'"),
])
def test_serve_without_a_service_says_so_in_one_line(tmp_path, package, message):
    result = serve("migrate", cwd=tmp_path, **({} if package is None else {"SERVICE_PACKAGE": package}))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr


def test_no_setting_reads_the_service_package_variable():
    """SERVICE_PACKAGE is in every container's environment; no settings field may pick it up."""
    for source in (ROOT / "services").glob("*/src/**/*.py"):
        if source.name != "serve.py":
            assert "service_package" not in source.read_text().lower(), source


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
