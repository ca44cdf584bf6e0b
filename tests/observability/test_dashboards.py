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
    stat_display,
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
    # Provisioned from a ConfigMap: edits in the UI could not be saved, so the UI does not offer them.
    assert dashboard["editable"] is False
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
        "mw_feedback_total",  # the share of 👍 (issue 15.2)
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


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_every_tile_is_red_when_its_query_answers_nothing(name):
    for panel in panels(load_dashboards()[name]):
        if panel["type"] == "stat":
            assert stat_display(panel, None) == ("NO DATA", "red"), panel["title"]


def test_state_tiles_tell_a_stopped_service_from_a_failing_check():
    tiles = {panel["title"]: panel for panel in panels(load_dashboards()["multyworkemon-health.json"])}
    shown = {title: {value: stat_display(tiles[title], value) for value in (-1, 0, 1)}
             for title in ("Up (instances scraped)", "Ready", "Channel connected", "Database reachable")}
    assert shown["Ready"] == {-1: ("SERVICE DOWN", "red"), 0: ("NOT READY", "red"), 1: ("READY", "green")}
    assert shown["Channel connected"] == {-1: ("SERVICE DOWN", "red"), 0: ("DISCONNECTED", "red"), 1: ("CONNECTED", "green")}
    assert shown["Database reachable"] == {-1: ("SERVICE DOWN", "red"), 0: ("UNREACHABLE", "red"), 1: ("REACHABLE", "green")}
    assert shown["Up (instances scraped)"] == {-1: ("SERVICE DOWN", "red"), 0: ("DOWN", "red"), 1: ("1", "green")}


# Units that say "per second" of something; CPU seconds per second are cores.
PER_SECOND = {"reqps", "ops", "mps", "count:tok/s", "suffix:cores", "percentunit", "s"}


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS.glob("*.json")))
def test_rate_panels_have_rate_units_and_every_table_number_a_unit(name):
    for panel in panels(load_dashboards()[name]):
        exprs = [target["expr"] for target in panel["targets"]]
        if panel["type"] == "timeseries" and any("rate(" in expr for expr in exprs):
            assert panel["fieldConfig"]["defaults"]["unit"] in PER_SECOND, f"{panel['title']}: {panel['fieldConfig']['defaults']['unit']}"
        if panel["type"] == "table":
            units = {o["matcher"]["options"]: o["properties"][0]["value"] for o in panel["fieldConfig"]["overrides"]
                     if o["properties"][0]["id"] == "unit"}
            organize = panel["transformations"][1]["options"]
            # Grafana names a table's numbers "Value" (one query) or "Value #A", "Value #B"...
            refs = [target["refId"] for target in panel["targets"]]
            columns = ["Value"] if len(refs) == 1 else [f"Value #{ref}" for ref in refs]
            shown = [organize["renameByName"].get(c, c) for c in columns if not organize["excludeByName"].get(c)]
            assert all(column in units for column in shown), f"{panel['title']}: {shown} without a unit ({units})"
    cpu = [p for p in panels(load_dashboards()[name]) if "mw_process_cpu_seconds_total" in p["targets"][0]["expr"]]
    assert cpu and all(p["fieldConfig"]["defaults"]["unit"] == "suffix:cores" for p in cpu)


def test_requests_in_flight_leave_out_the_scrape_that_reads_them():
    (panel,) = [p for p in panels(load_dashboards()["multyworkemon-service.json"]) if p["title"] == "Requests in flight"]
    assert "mw_http_requests_in_flight{" in panel["targets"][0]["expr"] and " - 1, 0)" in panel["targets"][0]["expr"]
