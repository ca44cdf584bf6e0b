"""Shared fixtures of the chart checks: the real helm and kubeconform, the charts built once in a
scratch copy, and rendering with caching. The tools come from .bin/ (scripts/install-deps.sh
--test builds them); a missing tool fails the tests, it never skips them."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".bin"
HERE = Path(__file__).resolve().parent

SERVICES = {
    # chart name: (python module, port)
    "ai-secretary": ("ai_secretary", 8000),
    "ai-guesser": ("ai_guesser", 8001),
    "ai-systemanalitic": ("ai_systemanalitic", 8002),
    "ai-communicator": ("ai_communicator", 8003),
}
# Kubernetes versions every rendered object is validated against: the oldest the charts allow
# (kubeVersion >=1.29 is checked with 1.30, the oldest still served by most providers), a middle
# one, and kind v0.32.0's node (v1.36).
KUBE_VERSIONS = ["1.30.0", "1.33.0", "1.36.0"]
MONITORING_API = "monitoring.coreos.com/v1"


def library_defaults() -> dict:
    """The service charts' shared defaults: the YAML inside "mw.defaults" of the library chart."""
    text = (ROOT / "charts/multyworkemon-lib/templates/_defaults.tpl").read_text()
    body = text.split('{{- define "mw.defaults" -}}\n', 1)[1].split("{{- end }}", 1)[0]
    return yaml.safe_load(body)


def deep_merge(base: dict, over: dict) -> dict:
    """What the library's mustMergeOverwrite does: maps merge, anything else in `over` wins."""
    out = dict(base)
    for key, value in over.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def chart_values(chart: str) -> dict:
    """A service chart's values as its templates see them: the library's defaults under its values.yaml."""
    return deep_merge(library_defaults(), yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text()))


def tool(name: str) -> str:
    path = BIN / name
    if not path.is_file():
        found = shutil.which(name)
        if not found:
            pytest.fail(f"{name} is missing: run scripts/install-deps.sh --test (it builds .bin/{name})")
        return found
    return str(path)


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


@pytest.fixture(scope="session")
def kubeconform() -> str:
    return tool("kubeconform")


@pytest.fixture(scope="session")
def charts(tmp_path_factory, helm) -> Path:
    """A copy of charts/ and k8s/observability with their dependencies built, as a user would."""
    scratch = tmp_path_factory.mktemp("charts")
    shutil.copytree(ROOT / "charts", scratch / "charts", ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    # The observability chart reads dashboards/ through its files link.
    shutil.copytree(ROOT / "k8s" / "observability", scratch / "k8s" / "observability", symlinks=True)
    (scratch / "dashboards").symlink_to(ROOT / "dashboards")
    for name in [*SERVICES, "multyworkemon"]:
        run([helm, "dependency", "build", str(scratch / "charts" / name)])
    return scratch


class Renderer:
    def __init__(self, helm: str, charts: Path):
        self.helm = helm
        self.charts = charts

    @functools.lru_cache(maxsize=None)
    def text(self, chart: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = (),
             monitoring: bool = False, kube_version: str = KUBE_VERSIONS[-1], release: str = "mw",
             namespace: str = "multyworkemon") -> str:
        path = self.charts / chart
        args = [self.helm, "template", release, str(path), "--namespace", namespace,
                "--kube-version", kube_version]
        for file in values:
            args += ["--values", str(file)]
        for item in sets:
            args += ["--set", item]
        if monitoring:
            args += ["--api-versions", MONITORING_API]
        return run(args, cwd=self.charts).stdout

    def objects(self, chart: str, **kwargs) -> list[dict]:
        kwargs = {key: tuple(value) if isinstance(value, list) else value for key, value in kwargs.items()}
        return [doc for doc in yaml.safe_load_all(self.text(chart, **kwargs)) if doc]


@pytest.fixture(scope="session")
def render(helm, charts) -> Renderer:
    return Renderer(helm, charts)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj.get("kind") == kind]


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod", "DaemonSet")
