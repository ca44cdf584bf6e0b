"""Reading what dashboards/ ships: dashboard panels and their queries, alert rules, the metric catalog."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards" / "grafana"
RULES = ROOT / "dashboards" / "alerts" / "multyworkemon.rules.yaml"
RULE_TESTS = ROOT / "dashboards" / "alerts" / "multyworkemon.test.yaml"
LOGGING = ROOT / "dashboards" / "logging"
CATALOG = ROOT / "docs" / "metrics.md"
SERVICES = ("ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")

# Series that only a Kubernetes cluster with kube-prometheus-stack has (kube-state-metrics, cAdvisor).
CLUSTER_METRICS = {"kube_pod_container_status_restarts_total", "container_cpu_usage_seconds_total", "container_memory_working_set_bytes"}
# Grafana's own variables, and the values the checks give them: with 1 s scrapes, one minute holds
# every sample the tests produce.
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__range": "5m", "__interval": "15s"}

_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_METRIC = re.compile(r"\b(mw_[a-z0-9_]+|up|kube_[a-z0-9_]+|container_[a-z0-9_]+)\b(?!\s*\()")
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
    return set(re.findall(r"^\| `(mw_[a-z0-9_]+)` \|", CATALOG.read_text(encoding="utf-8"), flags=re.MULTILINE))


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str


def alert_rules() -> list[AlertRule]:
    """The alerts of the rule file, read without a YAML library: `- alert:`, comments, then `expr:` (inline or `|` block)."""
    rules = []
    lines = RULES.read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^(\s*)- alert: (\w+)$", line)
        if not match:
            continue
        at = index + 1
        while lines[at].strip().startswith("#"):
            at += 1
        expr_line = lines[at].strip()
        assert expr_line.startswith("expr:"), f"{match.group(2)}: expr must follow alert"
        inline = expr_line[len("expr:"):].strip()
        if inline != "|":
            rules.append(AlertRule(match.group(2), inline))
            continue
        indent = len(lines[at]) - len(lines[at].lstrip())
        body = []
        for follower in lines[at + 1:]:
            if follower.strip() and len(follower) - len(follower.lstrip()) <= indent:
                break
            body.append(follower.strip())
        rules.append(AlertRule(match.group(2), " ".join(part for part in body if part)))
    return rules
