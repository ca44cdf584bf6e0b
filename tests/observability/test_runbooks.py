"""docs/runbooks.md against the rule file: every alert links its own section through the anchor
GitHub makes of the heading, and each section holds the alert's exact query, a Kibana search on
mapped fields and what to do. (The live Prometheus test runs every query of the runbooks.)"""

from __future__ import annotations

import re

import yaml

from es_template import IndexTemplate
from observability_files import LOGGING, ROOT, RUNBOOKS, alert_rules, runbook_blocks

# The project's home, as the charts declare it: the runbook links point at its main branch.
HOME = yaml.safe_load((ROOT / "charts/multyworkemon-lib/Chart.yaml").read_text(encoding="utf-8"))["home"]
RUNBOOK_URL = f"{HOME}/blob/main/docs/runbooks.md"


def github_anchors(markdown: str) -> dict[str, str]:
    """heading text -> the id GitHub gives it: github-slugger lowercases, drops every character but
    letters, digits, `_`, `-` and spaces, turns spaces into `-`, and numbers repeats (`-1`, `-2`)."""
    anchors: dict[str, str] = {}
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"^#{1,6} (.+?)\s*#*$", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.setdefault(match.group(1).strip(), slug if count == 0 else f"{slug}-{count}")
    return anchors


def sections() -> dict[str, str]:
    """Second-level heading -> its text up to the next one."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def test_the_anchors_are_githubs():
    anchors = github_anchors("# Runbooks: one section per alert\n## MWDatabaseDown\n```sh\n# not a heading\n```\n"
                             "## What's new?\n## What's new?\n## Поток_сообщений 2\n")
    assert anchors == {"Runbooks: one section per alert": "runbooks-one-section-per-alert", "MWDatabaseDown": "mwdatabasedown",
                       "What's new?": "whats-new", "Поток_сообщений 2": "поток_сообщений-2"}
    # a repeated heading gets the next number
    assert github_anchors("## A b\n## A b\n## A-b\n") == {"A b": "a-b", "A-b": "a-b-2"}


def test_every_alert_links_its_own_runbook_section():
    anchors = github_anchors(RUNBOOKS.read_text(encoding="utf-8"))
    for rule in alert_rules():
        assert rule.name in anchors, f"docs/runbooks.md has no heading {rule.name}"
        assert rule.annotations.get("runbook_url") == f"{RUNBOOK_URL}#{anchors[rule.name]}", rule.name


def test_every_runbook_section_is_an_alert_and_every_alert_has_one():
    assert set(sections()) == {rule.name for rule in alert_rules()}


def test_each_section_means_confirms_and_acts_with_the_alerts_own_query():
    bodies = sections()
    for rule in alert_rules():
        body = bodies[rule.name]
        for part in ("**What it means.**", "**Confirm.**", "**What to do.**"):
            assert part in body, f"{rule.name}: no {part}"
        assert body.index("**What it means.**") < body.index("**Confirm.**") < body.index("**What to do.**"), rule.name
        promql = runbook_blocks(body, "promql")
        assert promql and _one_line(promql[0]) == _one_line(rule.expr), f"{rule.name}: the first query is not the alert's own"
        assert runbook_blocks(body, "kql"), f"{rule.name}: no Kibana search"


def test_kibana_searches_use_fields_the_index_template_maps():
    template = IndexTemplate.load(LOGGING / "elasticsearch-index-template.json")
    for title, body in sections().items():
        for search in runbook_blocks(body, "kql"):
            without_strings = re.sub(r'"[^"]*"', '""', search)
            fields = re.findall(r"([A-Za-z_@][\w.@]*)\s*(?::|>=|<=|>|<)", without_strings)
            assert fields, f"{title}: {search}"
            unmapped = [field for field in fields if template.type_of(field) in (None, "object")]
            assert not unmapped, f"{title}: {unmapped} are not fields of mw-logs-*"
