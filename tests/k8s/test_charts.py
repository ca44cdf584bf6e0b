"""helm lint --strict on every chart, helm template over the values matrix with and without the
monitoring.coreos.com/v1 API, and every rendered object validated by kubeconform, strictly, offline,
against Kubernetes' own schemas (kubernetes-validate) for several versions and against the
prometheus-operator CRD schemas (tests/k8s/schemas) for the CRD objects. Nothing is skipped: an
object without a schema fails."""

from __future__ import annotations

import json
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from .conftest import HERE, KUBE_VERSIONS, ROOT, SERVICES, by_kind, chart_values, library_defaults, run

UMBRELLA_MATRIX = {
    "defaults": (),
    "kind": (ROOT / "charts/multyworkemon/values-kind.yaml",),
    "production": (ROOT / "charts/multyworkemon/values-production.yaml",),
    "everything-off": (HERE / "values/everything-off.yaml",),
    "oauth2-proxy": (HERE / "values/oauth2-proxy.yaml",),
    "embeddings": (HERE / "values/embeddings.yaml",),
}
STANDALONE_VALUES = (HERE / "values/standalone-external-db.yaml",)


def matrix():
    """(chart, values files, case name) for every render the checks cover."""
    for case, values in UMBRELLA_MATRIX.items():
        yield "charts/multyworkemon", values, case
    for name in SERVICES:
        yield f"charts/{name}", STANDALONE_VALUES, "standalone"
    yield "k8s/observability", (), "defaults"


CASES = [pytest.param(chart, values, id=f"{chart.split('/')[-1]}-{case}") for chart, values, case in matrix()]


@pytest.mark.parametrize("chart", ["charts/multyworkemon-lib", *[f"charts/{n}" for n in SERVICES],
                                   "charts/multyworkemon", "k8s/observability"])
def test_helm_lint_strict(helm, charts, chart):
    values = STANDALONE_VALUES if chart.split("/")[-1] in SERVICES else ()
    args = [helm, "lint", "--strict", str(charts / chart), "--kube-version", KUBE_VERSIONS[-1]]
    for file in values:
        args += ["--values", str(file)]
    out = run(args).stdout
    assert "0 chart(s) failed" in out


def test_umbrella_lints_with_every_values_file(helm, charts):
    for case, values in UMBRELLA_MATRIX.items():
        args = [helm, "lint", "--strict", str(charts / "charts/multyworkemon"), "--kube-version", KUBE_VERSIONS[-1]]
        for file in values:
            args += ["--values", str(file)]
        assert "0 chart(s) failed" in run(args).stdout, case


@pytest.fixture(scope="session")
def kube_schemas(tmp_path_factory) -> Path:
    """kubernetes-validate's strict schemas, their $refs ("/api/_definitions.json#...") turned into file
    URLs kubeconform's loader resolves."""
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
    target = tmp_path_factory.mktemp("kube-schemas")
    for version in KUBE_VERSIONS:
        folder = source / f"v{version}-local-strict"
        assert folder.is_dir(), f"kubernetes-validate has no schemas for {version}"
        out = target / f"v{version}"
        out.mkdir()
        definitions = (out / "_definitions.json").as_uri()
        for file in folder.glob("*.json"):
            text = file.read_text()
            (out / file.name).write_text(text.replace('"/api/_definitions.json#', f'"{definitions}#'))
    return target


def kubeconform_run(kubeconform, schemas: Path, version: str, files: list[Path]) -> dict:
    result = run(
        [kubeconform, "-strict", "-verbose", "-summary", "-output", "json", "-kubernetes-version", version,
         "-schema-location", str(schemas / f"v{version}" / "{{ .ResourceKind }}{{ .KindSuffix }}.json"),
         "-schema-location", str(HERE / "schemas" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
         *map(str, files)],
    )
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def validation(render, kubeconform, kube_schemas, tmp_path_factory) -> dict:
    """Every render of the matrix, for every Kubernetes version, through one kubeconform run per
    version (its schema cache makes that fast): {(case id, monitoring, version): (objects, results)}."""
    folder = tmp_path_factory.mktemp("rendered")
    files, expected = {}, {}
    for chart, values, case in matrix():
        for monitoring in (False, True):
            for version in KUBE_VERSIONS:
                text = render.text(chart, values=values, monitoring=monitoring, kube_version=version)
                name = f"{chart.replace('/', '_')}-{case}-{monitoring}-{version}.yaml"
                (folder / name).write_text(text)
                files.setdefault(version, []).append(folder / name)
                expected[(f"{chart.split('/')[-1]}-{case}", monitoring, version)] = (
                    str(folder / name), len([d for d in yaml.safe_load_all(text) if d]))
    reports = {version: kubeconform_run(kubeconform, kube_schemas, version, paths) for version, paths in files.items()}
    out = {}
    for key, (filename, count) in expected.items():
        results = [r for r in reports[key[2]]["resources"] if r["filename"] == filename]
        out[key] = (count, results)
    return out


@pytest.mark.parametrize("monitoring", [False, True], ids=["no-monitoring-api", "monitoring-api"])
@pytest.mark.parametrize("case", [c.id for c in CASES])
def test_rendered_objects_are_valid_kubernetes(validation, case, monitoring):
    for version in KUBE_VERSIONS:
        count, results = validation[(case, monitoring, version)]
        bad = [r for r in results if r["status"] != "statusValid"]
        assert not bad, f"Kubernetes {version}: " + json.dumps(bad, indent=1)
        # Every object was checked against a schema (none skipped for want of one).
        assert len(results) == count > 0


@pytest.mark.parametrize("chart,values", CASES)
def test_crd_objects_follow_the_monitoring_api(render, chart, values):
    """ServiceMonitors and PrometheusRules appear exactly when the cluster serves their API."""
    without = render.objects(chart, values=values, monitoring=False)
    with_api = render.objects(chart, values=values, monitoring=True)
    crd_kinds = {"ServiceMonitor", "PrometheusRule"}
    assert not [o for o in without if o["kind"] in crd_kinds], "rendered without monitoring.coreos.com/v1"
    if chart.endswith("observability"):
        rule_files = sorted((ROOT / "dashboards/alerts").glob("*.rules.yaml"))
        assert len(by_kind(with_api, "PrometheusRule")) == len(rule_files) > 0
    elif "everything-off" not in str(values):
        services = [d for d in by_kind(with_api, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/name"] in SERVICES]
        assert len(by_kind(with_api, "ServiceMonitor")) == len(services) > 0
    else:
        assert not by_kind(with_api, "ServiceMonitor")


def test_service_monitor_can_be_forced_without_the_api(render):
    objects = render.objects("charts/ai-guesser", values=STANDALONE_VALUES, sets=("serviceMonitor.force=true",))
    assert len(by_kind(objects, "ServiceMonitor")) == 1


def test_crd_schemas_reject_a_wrong_object(kubeconform, kube_schemas):
    """The vendored CRD schemas really check: a misspelt field fails."""
    bad = yaml.safe_dump({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": {"name": "x"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"port": "http", "intervall": "30s"}]},
    })
    result = __import__("subprocess").run(
        [kubeconform, "-strict", "-output", "json",
         "-schema-location", str(HERE / "schemas" / "{{ .Group }}" / "{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json"),
         "-"], input=bad, capture_output=True, text=True)
    assert result.returncode != 0
    assert "intervall" in result.stdout


def test_service_values_hold_only_what_differs_from_the_library():
    """Issue 12: shared defaults live once (the library's "mw.defaults"); a service chart's
    values.yaml restates none of them."""
    defaults = library_defaults()

    def restated(values: dict, base: dict, path: str = ""):
        for key, value in values.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict) and value:
                yield from restated(value, base[key], f"{path}{key}.")
            elif key in base and base[key] == value:
                yield f"{path}{key}"

    for name in SERVICES:
        own = yaml.safe_load((ROOT / "charts" / name / "values.yaml").read_text())
        assert not list(restated(own, defaults)), name
        assert set(own) <= set(defaults) | {"component", "image", "port"}, name


@pytest.mark.parametrize("name", list(SERVICES))
def test_library_defaults_render_like_helms_own_values_merge(helm, charts, tmp_path, name):
    """The chart rendered as is (template-level merge) equals the chart whose values.yaml holds the
    defaults merged in Python; that render also checks the merged values against the schema."""
    import shutil

    merged = tmp_path / name
    shutil.copytree(charts / "charts" / name, merged)
    (merged / "values.yaml").write_text(yaml.safe_dump(chart_values(name), allow_unicode=True))
    args = ["--kube-version", KUBE_VERSIONS[-1], "--values", str(STANDALONE_VALUES[0])]
    as_is = run([helm, "template", "mw", str(charts / "charts" / name), *args]).stdout
    assert as_is == run([helm, "template", "mw", str(merged), *args]).stdout


def test_one_values_schema_serves_the_four_charts():
    """One schema file, linked (not copied) into each chart, reusing its definitions by $ref."""
    shared = ROOT / "charts/multyworkemon-lib/service-values.schema.json"
    for name in SERVICES:
        assert (ROOT / "charts" / name / "values.schema.json").resolve() == shared, name
    assert '"$ref": "#/definitions/probe"' in shared.read_text()


def test_schema_rejects_a_typo(helm, charts):
    result = __import__("subprocess").run(
        [helm, "template", "x", str(charts / "charts/ai-guesser"), "--kube-version", KUBE_VERSIONS[-1],
         "--set", "replicas=3"], capture_output=True, text=True)
    assert result.returncode != 0 and "replicas" in result.stderr
    nested = __import__("subprocess").run(
        [helm, "template", "x", str(charts / "charts/ai-guesser"), "--kube-version", KUBE_VERSIONS[-1],
         "--set", "probes.startup.periodSecond=2"], capture_output=True, text=True)
    assert nested.returncode != 0 and "periodSecond" in nested.stderr


def test_secretary_without_a_database_fails_with_a_clear_message(helm, charts):
    result = __import__("subprocess").run(
        [helm, "template", "x", str(charts / "charts/ai-secretary"), "--kube-version", KUBE_VERSIONS[-1]],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "ai-secretary needs PostgreSQL" in result.stderr
