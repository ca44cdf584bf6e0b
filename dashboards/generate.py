"""Dashboards as code: writes the Grafana dashboards in dashboards/grafana/ from this file.

    uv run --frozen python dashboards/generate.py          # rewrite the JSON files
    uv run --frozen python dashboards/generate.py --check  # fail if the JSON files are stale

The JSON loads unchanged in the Grafana of kube-prometheus-stack (its dashboard sidecar picks up
ConfigMaps labelled grafana_dashboard: "1"): the Prometheus datasource is the template variable
`datasource`, uids are fixed, and there is no `__inputs` block to import through.

Every query filters on the metric label `service_name` (set by the services themselves, see
docs/metrics.md), never on scrape labels, so the same dashboards work on a laptop Prometheus and
in a cluster. The only scrape labels used are `namespace` (absent locally: the "All" value `.*`
matches it) and `job` for `up`, whose value contains the service name (the Kubernetes Service).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "grafana"
SERVICES = ("ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")
HEALTH_UID = "multyworkemon-health"
SERVICE_UID = "multyworkemon-service"
TAGS = ["multyworkemon"]

DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Probes and scrapes are not traffic: they would hide a real error ratio behind a steady trickle.
NOT_PROBES = 'route!~"/health.*|/metrics"'
# Grafana units with no built-in id: custom "suffix:" (a plain suffix) and "count:" (scaled, 1.2 K).
CORES = "suffix:cores"
TOKENS_PER_SECOND = "count:tok/s"


# --- building blocks ------------------------------------------------------------------------------


def query(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> dict:
    return {
        "datasource": DS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "format": "table" if table else "time_series",
    }


def _panel(kind: str, title: str, targets: list[dict], description: str, width: int, height: int) -> dict:
    for ref, target in zip("ABCDEFGHIJ", targets):
        target["refId"] = ref
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "targets": targets,
        "gridPos": {"w": width, "h": height},
    }


def timeseries(title: str, targets: list[dict], *, unit: str = "short", description: str = "", width: int = 12, stack: bool = False) -> dict:
    panel = _panel("timeseries", title, targets, description, width, 8)
    panel["fieldConfig"] = {
        "defaults": {
            "unit": unit,
            "min": 0,
            "custom": {
                "drawStyle": "line",
                "lineWidth": 1,
                "fillOpacity": 10,
                "showPoints": "never",
                "spanNulls": False,
                "stacking": {"mode": "normal" if stack else "none", "group": "A"},
            },
        },
        "overrides": [],
    }
    panel["options"] = {
        "legend": {"displayMode": "table", "placement": "bottom", "showLegend": True, "calcs": ["mean", "max", "lastNotNull"]},
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return panel


def stat(title: str, targets: list[dict], *, unit: str = "short", description: str = "", width: int = 6, height: int = 5,
         mappings: list[dict] | None = None, thresholds: list[tuple[float | None, str]] | None = None) -> dict:
    """A tile; every tile reads a red NO DATA when its query answers nothing (a stopped process leaves no series)."""
    panel = _panel("stat", title, targets, description, width, height)
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    panel["fieldConfig"] = {
        "defaults": {"unit": unit, "noValue": NO_DATA, "mappings": [*(mappings or []), NO_DATA_RED],
                     "thresholds": {"mode": "absolute", "steps": steps}},
        "overrides": [],
    }
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "value_and_name",
        "wideLayout": True,
    }
    return panel


def bargauge(title: str, targets: list[dict], *, unit: str = "short", description: str = "", width: int = 12) -> dict:
    panel = _panel("bargauge", title, targets, description, width, 8)
    panel["fieldConfig"] = {
        "defaults": {"unit": unit, "min": 0, "thresholds": {"mode": "absolute", "steps": [{"color": "blue", "value": None}]}},
        "overrides": [],
    }
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    }
    return panel


def table(title: str, targets: list[dict], columns: dict[str, str], *, units: dict[str, str], description: str = "",
          width: int = 24, height: int = 9, hide: tuple[str, ...] = ()) -> dict:
    """One row per label set, one column per query (`columns` renames "Value #A" and so on)."""
    panel = _panel("table", title, targets, description, width, height)
    panel["fieldConfig"] = {
        "defaults": {"custom": {"align": "auto", "filterable": True}},
        "overrides": [
            {"matcher": {"id": "byName", "options": name}, "properties": [{"id": "unit", "value": unit}]}
            for name, unit in units.items()
        ],
    }
    panel["options"] = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False, "reducer": ["sum"], "fields": ""}}
    panel["transformations"] = [
        {"id": "merge", "options": {}},
        {"id": "organize", "options": {"excludeByName": {name: True for name in ("Time", *hide)}, "renameByName": columns}},
    ]
    return panel


def row(title: str) -> dict:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


# What a tile shows for a service (or instance, or channel) that reported in the time range and no
# longer does: its process stopped answering scrapes, and Prometheus marks its series stale at the
# first failed scrape, so without this the tile would simply vanish. See `or_down`.
DOWN = -1
NO_DATA = "NO DATA"
# Grafana applies "special" mappings to the no-value display too: the empty tile is red, not grey.
NO_DATA_RED = {"type": "special", "options": {"match": "null+nan", "result": {"text": NO_DATA, "color": "red", "index": 0}}}


def states(by_value: dict[int, tuple[str, str]]) -> list[dict]:
    """Value mappings: {value: (text, color)}."""
    return [{"type": "value", "options": {
        str(value): {"text": text, "color": color, "index": index} for index, (value, (text, color)) in enumerate(by_value.items())
    }}]


SERVICE_DOWN = ("SERVICE DOWN", "red")
UP_DOWN = states({DOWN: SERVICE_DOWN, 0: ("DOWN", "red")})
READY = states({DOWN: SERVICE_DOWN, 0: ("NOT READY", "red"), 1: ("READY", "green")})
CONNECTED = states({DOWN: SERVICE_DOWN, 0: ("DISCONNECTED", "red"), 1: ("CONNECTED", "green")})
REACHABLE = states({DOWN: SERVICE_DOWN, 0: ("UNREACHABLE", "red"), 1: ("REACHABLE", "green")})
ONLY_DOWN = states({DOWN: SERVICE_DOWN})
RED_BELOW_1 = [(None, "red"), (1, "green")]


def or_down(now: str, series: str, by: str) -> str:
    """`now`, plus DOWN for each `by` that had `series` in the range and has it no more."""
    return f"{now} or group by ({by}) (last_over_time({series}[$__range])) * {DOWN}"


def while_running(expr: str, label: str, service: str, ns: str) -> str:
    """A count of one service's events: 0 (labelled `label`="none") when there were none, and no data
    at all, a red NO DATA, while that service is down instead of the last counts it reported."""
    zero = f'label_replace(vector(0), "{label}", "none", "", "")'
    return f'({expr} or on () {zero}) and on () group(mw_build_info{{service_name="{service}", {ns}}})'


def ratio(errors: str, total: str, by: str) -> str:
    """errors/total per `by`, 0 (not "no data") while there are no errors yet."""
    return f"(sum by ({by}) ({errors}) or sum by ({by}) ({total}) * 0) / sum by ({by}) ({total})"


def quantile(q: float, bucket_selector: str, by: str, window: str = RATE) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({bucket_selector}[{window}])))"


def layout(panels: list[dict]) -> list[dict]:
    """Give every panel an id and a place: left to right, wrapping at 24 columns; rows start a line."""
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
        grid = panel["gridPos"]
        if panel["type"] == "row" or x + grid["w"] > 24:
            y += line_height
            x = line_height = 0
        grid["x"], grid["y"] = x, y
        x += grid["w"]
        line_height = max(line_height, grid["h"])
        if panel["type"] == "row":
            y += grid["h"]
            x = line_height = 0
    return panels


def datasource_variable() -> dict:
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name: str, label: str, definition: str, *, multi: bool, include_all: bool, all_value: str | None = None) -> dict:
    variable = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": definition,
        "query": {"query": definition, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "current": {},
        "hide": 0,
        "includeAll": include_all,
        "multi": multi,
        "options": [],
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "skipUrlSync": False,
    }
    if all_value is not None:
        variable["allValue"] = all_value
    return variable


NAMESPACE_VARIABLE = query_variable(
    "namespace", "Namespace", "label_values(mw_build_info, namespace)", multi=True, include_all=True, all_value=".*"
)


def dashboard(uid: str, title: str, description: str, variables: list[dict], panels: list[dict], links: list[dict]) -> dict:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        # Provisioned from files (the Grafana sidecar): a change made in the UI could not be saved anyway.
        "editable": False,
        "graphTooltip": 1,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "timepicker": {},
        "schemaVersion": 39,
        "version": 1,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": links,
        "templating": {"list": variables},
        "panels": layout(panels),
    }


# --- MultyWorkemon health -------------------------------------------------------------------------


def health_dashboard() -> dict:
    sel = 'service_name=~"$service", namespace=~"$namespace"'
    ns = 'namespace=~"$namespace"'
    http = f"mw_http_requests_total{{{sel}, {NOT_PROBES}}}"
    http_5xx = f'mw_http_requests_total{{{sel}, {NOT_PROBES}, status=~"5.."}}'
    http_4xx = f'mw_http_requests_total{{{sel}, {NOT_PROBES}, status=~"4.."}}'
    http_bucket = f"mw_http_request_duration_seconds_bucket{{{sel}, {NOT_PROBES}}}"
    llm = f"mw_llm_requests_total{{{sel}}}"
    llm_failed = f'mw_llm_requests_total{{{sel}, outcome!="ok"}}'
    cluster = 'container=~"$service", namespace=~"$namespace"'
    up = f'up{{job=~".*$service.*", {ns}}}'
    ready = f"mw_ready{{{sel}}}"
    started = f"mw_process_start_time_seconds{{{sel}}}"
    connected = f"mw_channel_connected{{{ns}}}"
    db_up = f"mw_db_up{{{sel}}}"
    cluster_note = "Needs kube-state-metrics / cAdvisor (kube-prometheus-stack); empty outside a cluster."

    panels = [
        row("Services: up and ready"),
        stat("Up (instances scraped)", [query(or_down(f"sum by (job) ({up})", up, "job"), "{{job}}", instant=True)],
             description="Instances Prometheus could scrape (`up`). DOWN: every instance of the service fails its scrape; SERVICE DOWN: its scrape targets are gone (scaled to zero, deleted).",
             mappings=UP_DOWN, thresholds=RED_BELOW_1),
        stat("Ready", [query(or_down(f"min by (service_name) ({ready})", ready, "service_name"), "{{service_name}}", instant=True)],
             description="`mw_ready`: the service's own readiness (the secretary: database reachable and migrated; the communicator: its channels connected). Shows the worst instance; SERVICE DOWN when no instance answers.",
             mappings=READY, thresholds=RED_BELOW_1),
        stat("Restarts in range", [query(or_down(f"sum by (service_name) (changes({started}[$__range])) and on (service_name) {started}", started, "service_name"),
                                         "{{service_name}}", instant=True)],
             description="Process restarts seen in the selected time range (changes of `mw_process_start_time_seconds`); SERVICE DOWN when no instance answers.",
             mappings=ONLY_DOWN, thresholds=[(None, "green"), (1, "orange"), (3, "red")]),
        table("Versions", [query(f"count by (service_name, version) (mw_build_info{{{sel}}})", instant=True, table=True)],
              {"Value": "instances", "service_name": "service", "version": "version"}, units={"instances": "none"},
              description="Instances per service and version (`mw_build_info`).", width=6, height=5),
        row("Traffic"),
        timeseries("Request rate", [query(f"sum by (service_name) (rate({http}[{RATE}]))", "{{service_name}}")],
                   unit="reqps", description="HTTP requests per second, without health probes and scrapes."),
        timeseries("Error ratio (5xx)", [query(ratio(f"rate({http_5xx}[{RATE}])", f"rate({http}[{RATE}])", "service_name"), "{{service_name}}")],
                   unit="percentunit", description="Share of requests answered 5xx (the service or its upstream failed)."),
        timeseries("Client errors (4xx)", [query(f"sum by (service_name, status) (rate({http_4xx}[{RATE}]))", "{{service_name}} {{status}}")],
                   unit="reqps", description="Requests rejected as bad (400), unauthorised (401), too large (413), duplicates (409), rate limited (429)."),
        timeseries("Latency p50 / p95 / p99", [
            query(quantile(0.5, http_bucket, "service_name"), "p50 {{service_name}}"),
            query(quantile(0.95, http_bucket, "service_name"), "p95 {{service_name}}"),
            query(quantile(0.99, http_bucket, "service_name"), "p99 {{service_name}}"),
        ], unit="s", description="Time to answer an HTTP request, all routes together."),
        table("Routes in range", [
            query(f"sum by (service_name, route) (rate({http}[$__range]))", instant=True, table=True),
            query(ratio(f"rate({http_5xx}[$__range])", f"rate({http}[$__range])", "service_name, route"), instant=True, table=True),
            query(quantile(0.5, http_bucket, "service_name, route", "$__range"), instant=True, table=True),
            query(quantile(0.95, http_bucket, "service_name, route", "$__range"), instant=True, table=True),
            query(quantile(0.99, http_bucket, "service_name, route", "$__range"), instant=True, table=True),
        ], {"service_name": "service", "route": "route", "Value #A": "req/s", "Value #B": "5xx ratio",
            "Value #C": "p50", "Value #D": "p95", "Value #E": "p99"},
            units={"req/s": "reqps", "5xx ratio": "percentunit", "p50": "s", "p95": "s", "p99": "s"},
            description="Per route over the selected range: rate, 5xx ratio and latency quantiles."),
        row("Pipeline"),
        timeseries("Pipeline outcomes by action", [query(f"sum by (action) (rate(mw_pipeline_outcomes_total{{{ns}}}[{RATE}]))", "{{action}}")],
                   unit="reqps", stack=True, description="Requests the secretary answered, by the action chosen (уточнить = a clarifying question)."),
        bargauge("Outcomes in range by channel and action", [query(f"sum by (channel, action) (increase(mw_pipeline_outcomes_total{{{ns}}}[$__range]))", "{{channel}} · {{action}}", instant=True)],
                 description="How many requests ended in each action, per channel (email, tg, direct)."),
        # Ratings are few: a window of hours, not the rate interval, so one vote does not swing the line to 0 or 1.
        timeseries("Share of 👍 over time", [
            query(ratio(f'increase(mw_feedback_total{{{ns}, rating="up"}}[6h])', f"increase(mw_feedback_total{{{ns}}}[6h])", "channel"), "{{channel}}"),
            query(ratio(f'increase(mw_feedback_total{{{ns}, rating="up"}}[6h])', f"increase(mw_feedback_total{{{ns}}}[6h])", ""), "all channels"),
        ], unit="percentunit", description="Of the answers users rated in the last 6 hours, the share rated 👍 (web chat buttons, Telegram keyboard, a \"1\" by mail); a changed rating counts again."),
        timeseries("Pipeline errors by stage", [query(f"sum by (stage, channel) (rate(mw_pipeline_errors_total{{{ns}}}[{RATE}]))", "{{stage}} · {{channel}}")],
                   unit="reqps", description="Requests that failed, by the stage that failed (guesser, analyst, database...). The request itself is stored."),
        timeseries("Calls between services", [query(f"sum by (service_name, upstream, outcome) (rate(mw_upstream_requests_total{{{sel}}}[{RATE}]))", "{{service_name}} → {{upstream}} {{outcome}}")],
                   unit="reqps", description="Calls to other services by outcome (ok, error, unavailable, timeout)."),
        timeseries("Upstream latency p95", [query(quantile(0.95, f"mw_upstream_request_duration_seconds_bucket{{{sel}}}", "service_name, upstream"), "{{service_name}} → {{upstream}}")],
                   unit="s", description="Time the caller waited for the other service, retries included."),
        row("LLM"),
        timeseries("LLM calls", [query(f"sum by (provider, model, outcome) (rate({llm}[{RATE}]))", "{{provider}}/{{model}} {{outcome}}")],
                   unit="reqps", description="Calls to the language model by provider, model and outcome (ok, error, timeout, unavailable, rate_limited, invalid_output)."),
        timeseries("LLM error ratio", [query(ratio(f"rate({llm_failed}[{RATE}])", f"rate({llm}[{RATE}])", "provider, model"), "{{provider}}/{{model}}")],
                   unit="percentunit", description="Share of LLM calls that did not give a usable answer."),
        timeseries("LLM latency p50 / p95 / p99", [
            query(quantile(0.5, f"mw_llm_request_duration_seconds_bucket{{{sel}}}", "provider, model"), "p50 {{provider}}/{{model}}"),
            query(quantile(0.95, f"mw_llm_request_duration_seconds_bucket{{{sel}}}", "provider, model"), "p95 {{provider}}/{{model}}"),
            query(quantile(0.99, f"mw_llm_request_duration_seconds_bucket{{{sel}}}", "provider, model"), "p99 {{provider}}/{{model}}"),
        ], unit="s", description="Time of one LLM call (one attempt)."),
        timeseries("LLM tokens", [query(f"sum by (provider, model, kind) (rate(mw_llm_tokens_total{{{sel}}}[{RATE}]))", "{{provider}}/{{model}} {{kind}}")],
                   unit=TOKENS_PER_SECOND, stack=True, description="Tokens per second, prompt and completion (what the provider bills)."),
        row("Channels: e-mail, Telegram, web chat"),
        stat("Channel connected", [query(or_down(f"max by (channel) ({connected})", connected, "channel"), "{{channel}}", instant=True)],
             description="The communicator's connection to the mailbox (IMAP), the Telegram Bot API and the web chat (any replica: only the one holding the poller lock polls); SERVICE DOWN when no communicator answers.",
             mappings=CONNECTED, thresholds=RED_BELOW_1, width=8),
        stat("Poison messages in range", [query(while_running(f"sum by (channel) (increase(mw_channel_poison_messages_total{{{ns}}}[$__range]))", "channel", "ai-communicator", ns),
                                                "{{channel}}", instant=True)],
             description="Messages that failed every try and were moved aside: a human must look at them. NO DATA while the communicator is down.",
             thresholds=[(None, "green"), (1, "red")], width=8),
        stat("Actions failed in range", [query(while_running(f'sum by (action) (increase(mw_actions_total{{{ns}, outcome!="done"}}[$__range]))', "action", "ai-communicator", ns),
                                               "{{action}}", instant=True)],
             description="Actions (Jira task, note to a colleague, department mailing, reply) that could not be carried out. NO DATA while the communicator is down.",
             thresholds=[(None, "green"), (1, "red")], width=8),
        timeseries("Messages per channel", [
            query(f"sum by (channel) (rate(mw_channel_messages_received_total{{{ns}}}[{RATE}]))", "{{channel}} in"),
            query(f"sum by (channel) (rate(mw_channel_messages_processed_total{{{ns}}}[{RATE}]))", "{{channel}} answered"),
            query(f"sum by (channel) (rate(mw_channel_messages_failed_total{{{ns}}}[{RATE}]))", "{{channel}} failed"),
            query(f"sum by (channel) (rate(mw_channel_messages_retried_total{{{ns}}}[{RATE}]))", "{{channel}} retried"),
        ], unit="mps", description="Messages per second coming in, answered, failed and retried, per channel."),
        timeseries("Arrival to reply p50 / p95", [
            query(quantile(0.5, f"mw_channel_reply_duration_seconds_bucket{{{ns}}}", "channel"), "p50 {{channel}}"),
            query(quantile(0.95, f"mw_channel_reply_duration_seconds_bucket{{{ns}}}", "channel"), "p95 {{channel}}"),
        ], unit="s", description="From the moment a message arrived to the moment its answer was sent."),
        timeseries("Actions carried out", [query(f"sum by (action, outcome) (rate(mw_actions_total{{{ns}}}[{RATE}]))", "{{action}} {{outcome}}")],
                   unit="ops", stack=True, description="Actions per second by kind and outcome.", width=24),
        row("Database"),
        stat("Database reachable", [query(or_down(f"min by (service_name) ({db_up})", db_up, "service_name"), "{{service_name}}", instant=True)],
             description="`mw_db_up`: the last database check of each service that keeps data in PostgreSQL (the secretary, the analyst); SERVICE DOWN when no instance of the service answers; NO DATA when none of the selected services has a database.",
             mappings=REACHABLE, thresholds=RED_BELOW_1, width=8),
        timeseries("Database reachable over time", [query(f"min by (service_name) (mw_db_up{{{sel}}})", "{{service_name}}")],
                   description="1 while the database answers the service's checks; dips show outages and failovers.", width=16),
        row("Resources"),
        timeseries("CPU", [query(f"sum by (service_name) (rate(mw_process_cpu_seconds_total{{{sel}}}[{RATE}]))", "{{service_name}}")],
                   unit=CORES, description="CPU cores used by the service processes (all instances)."),
        timeseries("Resident memory", [query(f"sum by (service_name) (mw_process_resident_memory_bytes{{{sel}}})", "{{service_name}}")],
                   unit="bytes", description="Resident memory of the service processes (all instances)."),
        timeseries("Pod restarts (cluster)", [query(f"sum by (namespace, pod) (increase(kube_pod_container_status_restarts_total{{{cluster}}}[{RATE}]))", "{{namespace}}/{{pod}}")],
                   unit="short", description=f"Container restarts reported by Kubernetes. {cluster_note}", width=8),
        timeseries("Container CPU (cluster)", [query(f"sum by (namespace, pod) (rate(container_cpu_usage_seconds_total{{{cluster}}}[{RATE}]))", "{{namespace}}/{{pod}}")],
                   unit=CORES, description=f"CPU cores per pod as the kubelet measures it. {cluster_note}", width=8),
        timeseries("Container memory (cluster)", [query(f"sum by (namespace, pod) (container_memory_working_set_bytes{{{cluster}}})", "{{namespace}}/{{pod}}")],
                   unit="bytes", description=f"Working-set memory per pod (what the OOM killer looks at). {cluster_note}", width=8),
    ]
    variables = [
        datasource_variable(),
        NAMESPACE_VARIABLE,
        query_variable("service", "Service", "label_values(mw_build_info, service_name)", multi=True, include_all=True),
    ]
    links = [{"title": "Service drill-down", "type": "link", "url": f"/d/{SERVICE_UID}", "icon": "dashboard",
              "includeVars": False, "keepTime": True, "targetBlank": False, "tags": [], "asDropdown": False, "tooltip": ""}]
    return dashboard(HEALTH_UID, "MultyWorkemon health",
                     "Is every MultyWorkemon service up and ready, how much flows, how much fails, how slow, the LLM, the channels, the database.",
                     variables, panels, links)


# --- per-service drill-down -----------------------------------------------------------------------


def service_dashboard() -> dict:
    sel = 'service_name="$service", instance=~"$instance", namespace=~"$namespace"'
    http = f"mw_http_requests_total{{{sel}, {NOT_PROBES}}}"
    http_5xx = f'mw_http_requests_total{{{sel}, {NOT_PROBES}, status=~"5.."}}'
    http_bucket = f"mw_http_request_duration_seconds_bucket{{{sel}, {NOT_PROBES}}}"
    llm = f"mw_llm_requests_total{{{sel}}}"
    ready = f"mw_ready{{{sel}}}"
    started = f"mw_process_start_time_seconds{{{sel}}}"
    panels = [
        row("Instances"),
        stat("Ready", [query(or_down(f"max by (instance) ({ready})", ready, "instance"), "{{instance}}", instant=True)],
             mappings=READY, thresholds=RED_BELOW_1,
             description="Readiness of each instance (`mw_ready`); SERVICE DOWN for an instance that stopped answering in the range.", width=8),
        stat("Uptime", [query(or_down(f"max by (instance) (time() - {started})", started, "instance"), "{{instance}}", instant=True)], unit="s",
             mappings=ONLY_DOWN, description="Time since each instance's process started; SERVICE DOWN for an instance that stopped answering in the range.", width=8),
        table("Versions", [query(f"mw_build_info{{{sel}}}", instant=True, table=True)],
              {"instance": "instance", "version": "version", "python_version": "python"}, units={},
              description="Version and Python of each instance (`mw_build_info`).", width=8, height=5,
              hide=("__name__", "Value", "job", "namespace", "service_name")),
        row("HTTP"),
        timeseries("Requests by route and status", [query(f"sum by (route, status) (rate({http}[{RATE}]))", "{{route}} {{status}}")],
                   unit="reqps", description="Requests per second by route template and status, without probes and scrapes."),
        timeseries("Error ratio (5xx) by route", [query(ratio(f"rate({http_5xx}[{RATE}])", f"rate({http}[{RATE}])", "route"), "{{route}}")],
                   unit="percentunit", description="Share of requests answered 5xx per route."),
        timeseries("Latency p50 by route", [query(quantile(0.5, http_bucket, "route"), "{{route}}")], unit="s", width=8,
                   description="Half of the requests are answered faster than this."),
        timeseries("Latency p95 by route", [query(quantile(0.95, http_bucket, "route"), "{{route}}")], unit="s", width=8,
                   description="95% of the requests are answered faster than this."),
        timeseries("Latency p99 by route", [query(quantile(0.99, http_bucket, "route"), "{{route}}")], unit="s", width=8,
                   description="The slowest 1% of the requests take longer than this."),
        # The scrape that reads the gauge is itself a request in flight: one is taken off per instance.
        timeseries("Requests in flight", [query(f"sum by (instance) (clamp_min(mw_http_requests_in_flight{{{sel}}} - 1, 0))", "{{instance}}")],
                   unit="none", description="Requests being served right now, per instance, without the Prometheus scrape that reads this number."),
        timeseries("Health probe and scrape rate", [query(f'sum by (route, status) (rate(mw_http_requests_total{{{sel}, route=~"/health.*|/metrics"}}[{RATE}]))', "{{route}} {{status}}")],
                   unit="reqps", description="Kubernetes probes and Prometheus scrapes: a 503 here is the service saying it is not ready."),
        row("Calls to other services"),
        timeseries("Upstream calls", [query(f"sum by (upstream, outcome) (rate(mw_upstream_requests_total{{{sel}}}[{RATE}]))", "{{upstream}} {{outcome}}")],
                   unit="reqps", description="The secretary's calls to the guesser and the analyst; the communicator's calls to the secretary."),
        timeseries("Upstream latency p50 / p95", [
            query(quantile(0.5, f"mw_upstream_request_duration_seconds_bucket{{{sel}}}", "upstream"), "p50 {{upstream}}"),
            query(quantile(0.95, f"mw_upstream_request_duration_seconds_bucket{{{sel}}}", "upstream"), "p95 {{upstream}}"),
        ], unit="s", description="Time the service waited for the other service, connection retries included."),
        row("LLM (the guesser and the analyst)"),
        timeseries("LLM calls by outcome", [query(f"sum by (provider, model, outcome) (rate({llm}[{RATE}]))", "{{provider}}/{{model}} {{outcome}}")],
                   unit="reqps", width=8, description="LLM call attempts by outcome; empty for services that do not ask an LLM."),
        timeseries("LLM latency p50 / p95", [
            query(quantile(0.5, f"mw_llm_request_duration_seconds_bucket{{{sel}}}", "provider, model"), "p50 {{provider}}/{{model}}"),
            query(quantile(0.95, f"mw_llm_request_duration_seconds_bucket{{{sel}}}", "provider, model"), "p95 {{provider}}/{{model}}"),
        ], unit="s", width=8, description="Time of one LLM call attempt."),
        timeseries("LLM tokens", [query(f"sum by (kind) (rate(mw_llm_tokens_total{{{sel}}}[{RATE}]))", "{{kind}}")], unit=TOKENS_PER_SECOND, stack=True, width=8,
                   description="Tokens per second, prompt and completion."),
        row("Process"),
        timeseries("CPU", [query(f"rate(mw_process_cpu_seconds_total{{{sel}}}[{RATE}])", "{{instance}}")], unit=CORES, width=8,
                   description="CPU cores used per instance."),
        timeseries("Resident memory", [query(f"mw_process_resident_memory_bytes{{{sel}}}", "{{instance}}")], unit="bytes", width=8,
                   description="Resident memory per instance; compare with the container's limit."),
        timeseries("Open file descriptors", [query(f"mw_process_open_fds{{{sel}}}", "{{instance}}")], width=8,
                   description="Sockets and files held open; a steady climb is a leak."),
    ]
    variables = [
        datasource_variable(),
        NAMESPACE_VARIABLE,
        query_variable("service", "Service", "label_values(mw_build_info, service_name)", multi=False, include_all=False),
        query_variable("instance", "Instance", 'label_values(mw_build_info{service_name="$service"}, instance)',
                       multi=True, include_all=True, all_value=".*"),
    ]
    links = [{"title": "MultyWorkemon health", "type": "link", "url": f"/d/{HEALTH_UID}", "icon": "dashboard",
              "includeVars": False, "keepTime": True, "targetBlank": False, "tags": [], "asDropdown": False, "tooltip": ""}]
    return dashboard(SERVICE_UID, "MultyWorkemon service", "One service in detail: instances, routes, upstream calls, LLM, process.",
                     variables, panels, links)


DASHBOARDS = {
    "multyworkemon-health.json": health_dashboard,
    "multyworkemon-service.json": service_dashboard,
}


def render(build) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a JSON file differs from what this script makes")
    args = parser.parse_args()
    stale = []
    for name, build in DASHBOARDS.items():
        path = OUT / name
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            OUT.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"stale: {', '.join(stale)}; run: uv run --frozen python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
