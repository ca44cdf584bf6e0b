"""The release workflow (.github/workflows/release.yml): actionlint finds nothing, and what it
publishes is what the charts and compose.yaml pull. It cannot push from here; GitHub runs it on a tag."""

from __future__ import annotations

import re

import pytest
import yaml

from .conftest import ROOT, SERVICES, run, tool

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


@pytest.fixture(scope="module")
def workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text())


def step(job: dict, uses: str) -> dict:
    return next(s for s in job["steps"] if s.get("uses", "").startswith(uses))


def test_actionlint_finds_nothing():
    # Every workflow file, with the expression, shell and action-input checks actionlint knows.
    result = run([tool("actionlint"), "-no-color"], cwd=ROOT)
    assert result.stdout == "", result.stdout


def test_runs_on_a_version_tag_only(workflow):
    # PyYAML reads the key `on` as True.
    assert workflow[True] == {"push": {"tags": ["v*"]}}
    assert workflow["permissions"] == {"contents": "read"}, "write access only in the jobs that push"


def test_images_are_the_ones_the_charts_and_compose_pull(workflow):
    job = workflow["jobs"]["images"]
    matrix = {entry["service"]: int(entry["port"]) for entry in job["strategy"]["matrix"]["include"]}
    assert matrix == {name: port for name, (_, port) in SERVICES.items()}
    build = step(job, "docker/build-push-action")["with"]
    assert build["file"] == "services/Dockerfile" and build["target"] == "runtime"
    assert set(build["platforms"].split(",")) >= {"linux/amd64", "linux/arm64"}
    assert build["build-args"].splitlines() == ["SERVICE=${{ matrix.service }}", "PORT=${{ matrix.port }}"]
    images = step(job, "docker/metadata-action")["with"]["images"]
    assert images == "ghcr.io/${{ needs.version.outputs.owner }}/${{ matrix.service }}"
    compose = (ROOT / "compose.yaml").read_text()
    for name in SERVICES:
        values = yaml.safe_load((ROOT / "charts" / name / "values.yaml").read_text())
        assert values["image"]["repository"] == f"ghcr.io/multyworkemon/{name}", name
        assert f"image: ${{MW_IMAGE_PREFIX:-ghcr.io/multyworkemon}}/{name}:${{MW_VERSION:-" in compose, name
    # The tag is the charts' appVersion, which is the images' default tag in the charts.
    tags = step(job, "docker/metadata-action")["with"]["tags"]
    assert "type=semver,pattern={{version}}" in tags


def test_every_chart_is_published_with_the_pinned_helm(workflow):
    job = workflow["jobs"]["charts"]
    assert job["needs"] == ["version", "images"], "charts only after their images exist"
    pinned = re.search(r"helm\.sh/helm/v3/cmd/helm@(\S+)", (ROOT / "scripts" / "go-tools.txt").read_text()).group(1)
    assert step(job, "azure/setup-helm")["with"]["version"] == pinned
    script = next(s["run"] for s in job["steps"] if "run" in s)
    listed = re.search(r"for chart in ([\w\s-]+); do", script).group(1).split()
    assert set(listed) == {path.parent.name for path in (ROOT / "charts").glob("*/Chart.yaml")}
    assert listed[0] == "multyworkemon-lib" and listed[-1] == "multyworkemon", "dependencies before their users"
    assert 'helm push "dist/$chart-$VERSION.tgz" "oci://ghcr.io/$OWNER/charts"' in script
