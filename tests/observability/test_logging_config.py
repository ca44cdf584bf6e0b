"""Fluent Bit settings, the Elasticsearch index template and the Kibana objects fit together and fit the log records."""

from __future__ import annotations

import json
import re

import pytest

from es_template import IndexTemplate
from observability_files import LOGGING

TEMPLATE = LOGGING / "elasticsearch-index-template.json"


def fluent_bit_sections() -> list[tuple[str, dict[str, str]]]:
    sections: list[tuple[str, dict[str, str]]] = []
    for raw in (LOGGING / "fluent-bit.conf").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if match := re.fullmatch(r"\[(\w+)\]", line):
            sections.append((match.group(1).upper(), {}))
            continue
        key, _, value = line.partition(" ")
        sections[-1][1][key.lower()] = value.strip()
    return sections


def section(kind: str, name: str) -> dict[str, str]:
    found = [settings for section_kind, settings in fluent_bit_sections() if section_kind == kind and settings["name"] == name]
    assert len(found) == 1, f"exactly one [{kind}] {name}"
    return found[0]


def test_fluent_bit_reads_cri_and_merges_the_services_json():
    tail = section("INPUT", "tail")
    assert "cri" in [p.strip() for p in tail["multiline.parser"].split(",")]
    kubernetes = section("FILTER", "kubernetes")
    assert kubernetes["merge_log"] == "On"
    assert kubernetes["keep_log"] == "Off", "the CRI 'log' string would clash with the services' 'log' object"
    assert tail["tag"].startswith("kube.") and kubernetes["match"] == "kube.*"
    modify = section("FILTER", "modify")
    assert (modify["condition"], modify["rename"]) == ("Key_Does_Not_Exist service", "log message")


def test_fluent_bit_writes_daily_mw_logs_indices_elasticsearch_8_accepts():
    es = section("OUTPUT", "es")
    assert es["logstash_format"] == "On" and es["logstash_prefix"] == "mw-logs"
    assert es["suppress_type_name"] == "On" and es["replace_dots"] == "On"
    # The services write @timestamp; Fluent Bit's own time must go elsewhere or the document has it twice.
    assert es["time_key"] not in ("@timestamp", "") and es.get("time_key") == "fluentbit_time"
    assert IndexTemplate.load(TEMPLATE).type_of(es["time_key"]) == "date"
    assert f"{es['logstash_prefix']}-*" in IndexTemplate.load(TEMPLATE).patterns


def test_index_template_maps_the_ecs_fields_of_the_conventions():
    template = IndexTemplate.load(TEMPLATE)
    assert template.patterns == ["mw-logs-*"]
    expected = {
        "@timestamp": "date", "message": "text", "log.level": "keyword", "log.logger": "keyword",
        "service.name": "keyword", "service.version": "keyword", "trace.id": "keyword", "event.duration": "long",
        "http.request.method": "keyword", "http.response.status_code": "long", "url.path": "keyword",
        "error.message": "text", "error.stack_trace": "text", "labels.anything": "keyword",
        "kubernetes.pod_name": "keyword", "kubernetes.namespace_name": "keyword", "kubernetes.labels": "flattened",
    }
    assert {path: template.type_of(path) for path in expected} == expected
    mappings = json.loads(TEMPLATE.read_text(encoding="utf-8"))["template"]["mappings"]
    # No guessing: a date-looking or number-looking string stays a string.
    assert mappings["date_detection"] is False and mappings["numeric_detection"] is False


@pytest.mark.parametrize(
    ("record", "problem"),
    [
        ({"@timestamp": "2026-01-01T00:00:00.000Z", "log": "a string"}, "log: mapped as an object"),
        ({"http": {"response": {"status_code": "200"}}}, "http.response.status_code: mapped as long"),
        ({"trace": {"id": {"nested": 1}}}, "trace.id: mapped as keyword, got an object"),
        ({"service.name": "dotted"}, "service.name: dotted key"),
        ({"surprise": 1}, "surprise: not in the index template"),
        ({"stream": "stdout"}, "top-level key 'stream' clashes"),
        ({"@timestamp": "yesterday"}, "@timestamp: mapped as date"),
    ],
)
def test_the_checker_catches_what_elasticsearch_would_reject(record, problem):
    problems = IndexTemplate.load(TEMPLATE).problems(record)
    assert any(p.startswith(problem) for p in problems), problems


def test_a_document_as_fluent_bit_sends_it_fits():
    record = {
        "@timestamp": "2026-11-22T07:44:02.123Z", "log": {"level": "info", "logger": "multyworkemon.http"},
        "message": "request served", "service": {"name": "ai-secretary", "version": "0.1.0"},
        "trace": {"id": "5b8e1c0e"}, "event": {"duration": 1234567},
        "http": {"request": {"method": "GET"}, "response": {"status_code": 200}}, "url": {"path": "/analyze-request"},
        "labels": {"turn_id": "12"},
    }
    template = IndexTemplate.load(TEMPLATE)
    assert template.problems(record) == []
    shipped = {**record, "fluentbit_time": "2026-11-22T07:44:02.130Z", "stream": "stdout", "_p": "F",
               "kubernetes": {"pod_name": "ai-secretary-7d9f", "namespace_name": "mw", "labels": {"app_kubernetes_io/name": "ai-secretary"}}}
    # What Fluent Bit adds is mapped (or a plain string, mapped as keyword by the template's dynamic rule).
    assert [p for p in template.problems(shipped) if "clashes" not in p and not p.startswith("_p:")] == []


def kibana_objects() -> list[dict]:
    lines = (LOGGING / "kibana-saved-objects.ndjson").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_kibana_data_view_on_mw_logs_with_timestamp():
    template = IndexTemplate.load(TEMPLATE)
    (view,) = [o for o in kibana_objects() if o["type"] == "index-pattern"]
    assert view["attributes"]["title"] in template.patterns
    assert template.type_of(view["attributes"]["timeFieldName"]) == "date"
    assert view["attributes"]["timeFieldName"] == "@timestamp"


def test_kibana_saved_search_follows_one_request_across_services():
    template = IndexTemplate.load(TEMPLATE)
    objects = kibana_objects()
    ids = {(o["type"], o["id"]) for o in objects}
    assert len(ids) == len(objects), "ids are unique"
    searches = {o["attributes"]["title"]: o for o in objects if o["type"] == "search"}
    one_request = searches["One request across services"]
    source = json.loads(one_request["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    assert source["query"]["language"] == "kuery" and source["query"]["query"].startswith("trace.id")
    assert one_request["attributes"]["sort"] == [["@timestamp", "asc"]]
    assert "service.name" in one_request["attributes"]["columns"]
    for search in searches.values():
        for column in search["attributes"]["columns"]:
            assert template.type_of(column) not in (None, "object"), f"{search['attributes']['title']}: column {column} is not a mapped field"
        (reference,) = search["references"]
        source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
        assert reference["name"] == source["indexRefName"]
        assert (reference["type"], reference["id"]) in ids
