"""The Grafana dashboards as files: generated from dashboards/generate.py, loadable in kube-prometheus-stack's Grafana unchanged."""

from __future__ import annotations

import importlib.util
import json

import pytest

from observability_files import (
    CLUSTER_METRICS,
    DASHBOARDS,
    GRAFANA_BUILTINS,
    ROOT,
    catalog_metrics,
    load_dashboards,
    metric_names,
    panel_queries,
    panels,
    variables_used,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def _generator():
    spec = importlib.util.spec_from_file_location("dashboards_generate", ROOT / "dashboards" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_json_files_are_what_the_generator_makes():
    generator = _generator()
    assert sorted(generator.DASHBOARDS) == sorted(p.name for p in DASHBOARDS.glob("*.json"))
    for name, build in generator.DASHBOARDS.items():
        on_disk = (DASHBOARDS / name).read_text(encoding="utf-8")
        assert on_disk == generator.render(build), f"{name} is stale: run `uv run --frozen python dashboards/generate.py`"


def test_the_two_dashboards_and_their_fixed_uids():
    dashboards = load_dashboards()
    by_uid = {d["uid"]: d["title"] for d in dashboards.values()}
    assert by_uid == {"multyworkemon-health": "MultyWorkemon health", "multyworkemon-service": "MultyWorkemon service"}
    assert all(len(uid) <= 40 for uid in by_uid)


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_loads_in_a_provisioned_grafana_unchanged(name):
    dashboard = load_dashboards()[name]
    text = (DASHBOARDS / name).read_text(encoding="utf-8")
    # Imported dashboards carry __inputs / ${DS_...}; the sidecar provisions files as they are.
    assert "__inputs" not in dashboard and "${DS_" not in text
    assert dashboard.get("id") is None, "a provisioned dashboard must not carry a database id"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE

    ids = [p["id"] for p in dashboard["panels"]] + [p["id"] for p in panels(dashboard) if p not in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    occupied: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, f"{panel['title']} sticks out of the 24 columns"
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells

    for panel in panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        assert panel.get("description"), f"{panel['title']} needs a description for the operators"
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE and target["expr"].strip(), panel["title"]
            unknown = variables_used(target["expr"]) - set(variables) - set(GRAFANA_BUILTINS)
            assert not unknown, f"{panel['title']}: undefined variables {unknown}"


def test_every_metric_a_panel_reads_is_in_the_catalog():
    documented = catalog_metrics()
    for name, dashboard in load_dashboards().items():
        for query in panel_queries(name, dashboard):
            missing = metric_names(query.expr) - documented - CLUSTER_METRICS - {"up"}
            assert not missing, f"{query.where} reads {missing}, not in docs/metrics.md"


def test_the_health_dashboard_covers_what_operators_look_for():
    dashboard = load_dashboards()["multyworkemon-health.json"]
    read = set().union(*(metric_names(q.expr) for q in panel_queries("health", dashboard)))
    wanted = {
        "up", "mw_ready",  # up and ready
        "mw_http_requests_total", "mw_http_request_duration_seconds",  # rate, errors, latency
        "mw_pipeline_outcomes_total",  # outcomes by action
        "mw_llm_requests_total", "mw_llm_request_duration_seconds", "mw_llm_tokens_total",
        "mw_channel_messages_received_total", "mw_channel_messages_processed_total",
        "mw_channel_messages_failed_total", "mw_channel_messages_retried_total", "mw_channel_reply_duration_seconds",
        "mw_db_up",
        "mw_process_cpu_seconds_total", "mw_process_resident_memory_bytes", "kube_pod_container_status_restarts_total",
    }
    assert wanted <= read, f"missing: {wanted - read}"
    quantiles = {q.expr.split(",")[0] for q in panel_queries("health", dashboard) if q.expr.startswith("histogram_quantile")}
    assert {"histogram_quantile(0.5", "histogram_quantile(0.95", "histogram_quantile(0.99"} <= quantiles


def test_catalog_lists_each_metric_once():
    text = (ROOT / "docs" / "metrics.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| `mw_")]
    assert len(rows) == len(set(rows)) and len(rows) >= 25


def test_generated_json_is_stable_text():
    # Sorted, indented, UTF-8 (Russian panel text stays readable in review).
    for path in DASHBOARDS.glob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
