"""Fluent Bit settings, the Elasticsearch index template and the Kibana objects fit together and fit the log records.

Fluent Bit itself is not a Debian package (nor on PyPI): its configuration is checked as text,
and the modify filters are run by a small model of the filter's documented operations."""

from __future__ import annotations

import copy
import json
import re

import pytest

from es_template import ISO_DATE, IndexTemplate
from observability_files import LOGGING, alert_rules

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


def section(kind: str, name: str | None = None, **having: str) -> dict[str, str]:
    """The one section of that kind (and plugin name, and settings) in fluent-bit.conf."""
    found = [settings for section_kind, settings in fluent_bit_sections()
             if section_kind == kind and settings.get("name") == name and all(settings.get(k) == v for k, v in having.items())]
    assert len(found) == 1, f"exactly one [{kind}] {name} {having}"
    return found[0]


def modify_filters(record: dict) -> dict:
    """The record after every [FILTER] modify of fluent-bit.conf, in their order: a model of the
    operations used (Condition Key_Exists / Key_Does_Not_Exist, Rename, Remove), as the modify
    filter documents them: Rename does nothing when the new name is taken."""
    record = copy.deepcopy(record)
    for kind, settings in fluent_bit_sections():
        if kind != "FILTER" or settings["name"] != "modify":
            continue
        operations = {key: value for key, value in settings.items() if key not in ("name", "match")}
        condition = operations.pop("condition", None)
        if condition:
            test, key = condition.split()
            assert test.lower() in ("key_exists", "key_does_not_exist"), f"the model does not know {test}"
            if (key in record) != (test.lower() == "key_exists"):
                continue
        for operation, argument in operations.items():
            if operation == "rename":
                old, new = argument.split()
                if old in record and new not in record:
                    record[new] = record.pop(old)
            elif operation == "remove":
                record.pop(argument, None)
            else:
                raise AssertionError(f"the model does not know {operation}")
    return record


# A record as the kubernetes filter hands it on, from the CRI line `<time> <stream> F <text>`.
CRI_TIME = "2026-11-22T07:44:02.123456789Z"
KUBERNETES = {"pod_name": "mw-ai-secretary-7d9f-abcde", "namespace_name": "multyworkemon", "container_name": "ai-secretary"}


def test_fluent_bit_reads_cri_and_merges_the_services_json():
    tail = section("INPUT", "tail")
    assert "cri" in [p.strip() for p in tail["multiline.parser"].split(",")]
    kubernetes = section("FILTER", "kubernetes")
    assert kubernetes["merge_log"] == "On"
    assert kubernetes["keep_log"] == "Off", "the CRI 'log' string would clash with the services' 'log' object"
    assert tail["tag"].startswith("kube.") and kubernetes["match"] == "kube.*"
    section("FILTER", "modify", condition="Key_Does_Not_Exist service", rename="log message")


def test_a_line_that_is_not_json_gets_the_runtimes_time_as_timestamp():
    """A traceback printed before logging was set up: its text becomes "message" and the CRI
    time "@timestamp", so Kibana's data view (time field @timestamp) lists it with the rest."""
    merged = {"time": CRI_TIME, "stream": "stderr", "_p": "F", "log": "Traceback (most recent call last):", "kubernetes": KUBERNETES}
    shipped = modify_filters(merged)
    assert shipped == {"@timestamp": CRI_TIME, "stream": "stderr", "_p": "F", "message": "Traceback (most recent call last):", "kubernetes": KUBERNETES}
    assert ISO_DATE.match(shipped["@timestamp"])
    template = IndexTemplate.load(TEMPLATE)
    assert [p for p in template.problems(shipped) if "clashes" not in p and not p.startswith("_p:")] == []


def test_a_services_record_keeps_its_own_timestamp_and_log_object():
    own = {"@timestamp": "2026-11-22T07:44:02.120Z", "log": {"level": "info", "logger": "multyworkemon.http"},
           "message": "request served", "service": {"name": "ai-secretary", "version": "0.1.0"}}
    merged = {"time": CRI_TIME, "stream": "stdout", "_p": "F", **own, "kubernetes": KUBERNETES}
    assert modify_filters(merged) == {"stream": "stdout", "_p": "F", **own, "kubernetes": KUBERNETES}


def test_fluent_bit_writes_daily_mw_logs_indices_elasticsearch_8_accepts():
    es = section("OUTPUT", "es")
    assert es["logstash_format"] == "On" and es["logstash_prefix"] == "mw-logs"
    assert es["suppress_type_name"] == "On" and es["replace_dots"] == "On"
    # The services write @timestamp; Fluent Bit's own time must go elsewhere or the document has it twice.
    assert es["time_key"] not in ("@timestamp", "") and es.get("time_key") == "fluentbit_time"
    assert IndexTemplate.load(TEMPLATE).type_of(es["time_key"]) == "date"
    assert f"{es['logstash_prefix']}-*" in IndexTemplate.load(TEMPLATE).patterns


def test_fluent_bit_gives_up_after_bounded_retries_and_keeps_what_it_gave_up():
    es = section("OUTPUT", "es")
    assert es["retry_limit"].isdigit() and 1 <= int(es["retry_limit"]) <= 10, "Retry_Limit False retried a refused chunk forever"
    assert es["trace_error"] == "On", "Elasticsearch's reason for refusing goes to Fluent Bit's log"
    service = section("SERVICE")
    # The dead-letter queue: chunks given up are copied under storage.path, within a size limit,
    # on the node's /var/log (mounted read-write by the chart's DaemonSet).
    assert service["storage.keep.rejected"] == "On" and service["storage.rejected.limit"]
    assert service["storage.path"].startswith("/var/log/") and service["storage.rejected.path"]
    # Retries end within minutes: at most base x 2^n, capped, per wait.
    assert int(service["scheduler.cap"]) * int(es["retry_limit"]) <= 3600


def test_the_drops_are_what_an_alert_watches():
    (rule,) = [rule for rule in alert_rules() if rule.name == "MWLogsDropped"]
    assert f'fluentbit_output_dropped_records_total{{name="{section("OUTPUT", "es")["alias"]}"}}' in rule.expr


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
