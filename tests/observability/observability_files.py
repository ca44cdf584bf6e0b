"""Reading what dashboards/ ships: dashboard panels and their queries, alert rules, the metric catalog."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards" / "grafana"
RULES = ROOT / "dashboards" / "alerts" / "multyworkemon.rules.yaml"
RULE_TESTS = ROOT / "dashboards" / "alerts" / "multyworkemon.test.yaml"
LOGGING = ROOT / "dashboards" / "logging"
CATALOG = ROOT / "docs" / "metrics.md"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
MONITORING_VALUES = ROOT / "k8s" / "values" / "kube-prometheus-stack.yaml"
SERVICES = ("ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")

# Series that only a Kubernetes cluster with kube-prometheus-stack has (kube-state-metrics, cAdvisor).
CLUSTER_METRICS = {"kube_pod_container_status_restarts_total", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
# Fluent Bit's own metrics (the DaemonSet of k8s/values/fluent-bit.yaml), also only in a cluster.
FLUENT_BIT_METRICS = {"fluentbit_output_dropped_records_total"}
# Grafana's own variables, and the values the checks give them: with 1 s scrapes, one minute holds
# every sample the tests produce.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\b(mw_[a-z0-9_]+|up|kube_[a-z0-9_]+|container_[a-z0-9_]+|fluentbit_[a-z0-9_]+)\b(?!\s*\()")
_SELECTOR = re.compile(r"\b((?:mw_[a-z0-9_]+|up))\b(\{[^}]*\})?(?!\s*\()")
_HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel: str
    ref: str
    expr: str

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref}"


def load_dashboards() -> dict[str, dict]:
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in sorted(DASHBOARDS.glob("*.json"))}


def panels(dashboard: dict) -> list[dict]:
    """Every panel that shows data, including those inside collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def panel_queries(name: str, dashboard: dict) -> list[PanelQuery]:
    return [
        PanelQuery(dashboard["title"], panel["title"], target["refId"], target["expr"])
        for panel in panels(dashboard)
        for target in panel["targets"]
    ]


def variables_used(expr: str) -> set[str]:
    return {a or b for a, b in _VARIABLE.findall(expr)}


def substitute(expr: str, values: dict[str, str]) -> str:
    """Grafana's interpolation for our queries: `$name` / `${name}` replaced by the given text."""
    values = {**GRAFANA_BUILTINS, **values}

    def replace(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for ${name} in {expr}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads, histogram series folded to their family."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    names = set()
    for name in _METRIC.findall(without_strings):
        names.add(_HISTOGRAM_SUFFIX.sub("", name) if name.startswith("mw_") and name.endswith(("_bucket", "_sum", "_count")) else name)
    return names


def selectors(expr: str) -> list[str]:
    """The vector selectors (name and matchers) of our metrics and `up` in an expression."""
    return [name + (matchers or "") for name, matchers in _SELECTOR.findall(expr)]


def catalog_metrics() -> set[str]:
    """Metric names documented in docs/metrics.md (the first column of its tables)."""
    return set(re.findall(r"^\| `((?:mw|fluentbit)_[a-z0-9_]+)` \|", CATALOG.read_text(encoding="utf-8"), flags=re.MULTILINE))


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    labels: dict = field(default_factory=dict, hash=False, compare=False)
    annotations: dict = field(default_factory=dict, hash=False, compare=False)


def rule_file() -> dict:
    return yaml.safe_load(RULES.read_text(encoding="utf-8"))


def alert_rules() -> list[AlertRule]:
    """Every alert of the rule file, as Prometheus reads it."""
    return [
        AlertRule(rule["alert"], rule["expr"].strip(), rule.get("labels", {}), rule.get("annotations", {}))
        for group in rule_file()["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def alertmanager_config() -> dict:
    """The Alertmanager configuration the monitoring values ship (kube-prometheus-stack's alertmanager.config)."""
    return yaml.safe_load(MONITORING_VALUES.read_text(encoding="utf-8"))["alertmanager"]["config"]


def stat_display(panel: dict, value: float | None) -> tuple[str, str | None]:
    """(text, color) of a stat tile for one value, as Grafana picks them: value mappings first,
    then the thresholds; None is the empty query (special mappings, then `noValue`)."""
    defaults = panel["fieldConfig"]["defaults"]
    empty = value is None or math.isnan(value)
    for mapping in defaults.get("mappings", []):
        if empty and mapping["type"] == "special" and mapping["options"]["match"] in ("null", "nan", "null+nan"):
            result = mapping["options"]["result"]
            return result.get("text", defaults.get("noValue", "No data")), result.get("color")
        if not empty and mapping["type"] == "value":
            result = mapping["options"].get(format(value, "g"))  # Grafana matches String(value): "-1", "0", "1"
            if result is not None:
                return result["text"], result.get("color")
    if empty:
        return defaults.get("noValue", "No data"), None
    steps = defaults["thresholds"]["steps"]
    color = [step["color"] for step in steps if step["value"] is None or value >= step["value"]][-1]
    return format(value, "g"), color


def runbook_blocks(markdown: str, language: str) -> list[str]:
    """The fenced code blocks of one language (```promql, ```kql) in a piece of docs/runbooks.md."""
    return re.findall(rf"^```{language}\n(.*?)^```$", markdown, flags=re.MULTILINE | re.DOTALL)
