"""k8s/observability and the add-on values against dashboards/: every dashboard and rule file is
loaded, and the loader Jobs' scripts, run with the real curl against local servers speaking the
Elasticsearch and Kibana APIs, wait, send the files and fail loudly."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, by_kind, pod_spec

DASHBOARDS = ROOT / "dashboards"


def observability(render):
    return render.objects("k8s/observability", monitoring=True)


def test_every_grafana_dashboard_becomes_a_labelled_configmap(render):
    files = sorted((DASHBOARDS / "grafana").glob("*.json"))
    assert files, "dashboards/grafana has no dashboard"
    maps = [c for c in by_kind(observability(render), "ConfigMap") if c["metadata"]["name"].startswith("grafana-dashboard-")]
    assert len(maps) == len(files)
    stack = yaml.safe_load((ROOT / "k8s/values/kube-prometheus-stack.yaml").read_text())
    sidecar = stack["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True and sidecar["searchNamespace"] == "ALL"
    loaded = {}
    for configmap in maps:
        assert configmap["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"] == "1"
        assert sidecar["folderAnnotation"] in configmap["metadata"]["annotations"]
        loaded.update(configmap["data"])
    for file in files:
        assert json.loads(loaded[file.name]) == json.loads(file.read_text())


def test_every_rule_file_becomes_a_prometheus_rule(render):
    files = sorted((DASHBOARDS / "alerts").glob("*.rules.yaml"))
    assert files
    rules = by_kind(observability(render), "PrometheusRule")
    assert len(rules) == len(files)
    by_name = {r["metadata"]["name"]: r for r in rules}
    for file in files:
        rule = by_name[file.name.removesuffix(".rules.yaml")]
        assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert rule["spec"]["groups"] == yaml.safe_load(file.read_text())["groups"]


def test_fluent_bit_is_wired_to_this_elasticsearch_and_these_containers(render):
    values = yaml.safe_load((ROOT / "k8s/values/fluent-bit.yaml").read_text())
    env = {e["name"]: e["value"] for e in values["env"]}
    service = next(s for s in by_kind(observability(render), "Service") if s["metadata"]["name"] == "elasticsearch")
    assert env["ELASTICSEARCH_HOST"] == f"{service['metadata']['name']}.monitoring.svc"
    assert int(env["ELASTICSEARCH_PORT"]) in {p["port"] for p in service["spec"]["ports"]}
    assert values["kind"] == "DaemonSet"
    assert values["config"]["filters"] == values["config"]["outputs"] == "", "the pipeline comes whole from dashboards/"
    conf = (DASHBOARDS / "logging/fluent-bit.conf").read_text()
    assert "${ELASTICSEARCH_HOST}" in conf and "${ELASTICSEARCH_PORT}" in conf
    settings = {line.split()[0]: line.split(None, 1)[1].strip() for line in conf.splitlines()
                if line.strip() and not line.strip().startswith(("#", "[")) and len(line.split()) > 1}
    for key, value in {"Suppress_Type_Name": "On", "Replace_Dots": "On", "Merge_Log": "On", "Keep_Log": "Off"}.items():
        assert settings[key] == value
    # The tail path selects the services' containers (files are <pod>_<namespace>_<container>-<id>.log).
    import fnmatch
    umbrella = render.objects("charts/multyworkemon", values=(ROOT / "charts/multyworkemon/values-kind.yaml",))
    for deployment in by_kind(umbrella, "Deployment"):
        container = pod_spec(deployment)["containers"][0]["name"]
        log = f"/var/log/containers/mw-{container}-7d9f-abcde_multyworkemon_{container}-0123abcd.log"
        assert fnmatch.fnmatch(log, settings["Path"]), f"{settings['Path']} misses {container}"


def test_fluent_bit_keeps_the_charts_service_section_and_node_mounts():
    """fluent-bit.conf adds its [SERVICE] keys to the chart's section and writes its dead-letter
    queue under /var/log, which the chart's DaemonSet mounts from the node: neither is overridden."""
    values = yaml.safe_load((ROOT / "k8s/values/fluent-bit.yaml").read_text())
    assert "service" not in values["config"]
    assert not {"daemonSetVolumes", "daemonSetVolumeMounts", "volumeMounts", "existingConfigMap"} & set(values)
    conf = (DASHBOARDS / "logging/fluent-bit.conf").read_text()
    lines = [line.strip() for line in conf.splitlines()]
    (storage,) = [line.split()[1] for line in lines if line.startswith("storage.path ")]
    assert lines.count("[SERVICE]") == 1 and storage.startswith("/var/log/")


def test_elasticsearch_fits_a_laptop(render):
    statefulset = next(s for s in by_kind(observability(render), "StatefulSet") if s["metadata"]["name"] == "elasticsearch")
    container = pod_spec(statefulset)["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["ES_JAVA_OPTS"] == "-Xms512m -Xmx512m"
    assert env["node.store.allow_mmap"] == "false"
    assert env["discovery.type"] == "single-node"
    assert env["xpack.security.enabled"] == "false"  # the reason is written in values.yaml and docs
    assert container["resources"]["limits"]["memory"] == "1536Mi"


# ---- the loader Jobs, run for real ---------------------------------------------------------------

class FakeStack(BaseHTTPRequestHandler):
    """Elasticsearch and Kibana as the Jobs see them: not ready for the first calls, then the APIs."""

    not_ready_left = 2
    kibana_success = True
    received: list = []

    def log_message(self, *args):
        pass

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        cls = type(self)
        if self.path.startswith(("/_cluster/health", "/api/status")):
            if cls.not_ready_left > 0:
                cls.not_ready_left -= 1
                return self.answer(503, {"status": "red"})
            return self.answer(200, {"status": "yellow"})
        self.answer(404, {})

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(("PUT", self.path, self.headers.get("Content-Type"), body))
        self.answer(200, {"acknowledged": True})

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(("POST", self.path, self.headers.get("kbn-xsrf"), body))
        if type(self).kibana_success:
            return self.answer(200, {"success": True, "successCount": 3})
        self.answer(200, {"success": False, "errors": [{"id": "x", "error": {"type": "conflict"}}]})


@pytest.fixture
def fake_stack():
    FakeStack.not_ready_left, FakeStack.kibana_success, FakeStack.received = 2, True, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeStack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def job_script(render, name: str) -> tuple[str, dict, dict]:
    objects = observability(render)
    job = next(j for j in by_kind(objects, "Job") if j["metadata"]["name"] == name)
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    container = pod_spec(job)["containers"][0]
    assert container["command"][:2] == ["/bin/sh", "-c"]
    data = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "logging-setup")["data"]
    return container["command"][2], {e["name"]: e["value"] for e in container["env"]}, data


def run_job(script: str, env: dict, data: dict, url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    curl = shutil.which("curl")
    assert curl, "curl is needed to run the loader scripts (the Jobs' image has it)"
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    env = {**env, "ELASTICSEARCH_URL": url, "KIBANA_URL": url, "WAIT_SECONDS": "30",
           "DATA_FILE": str(tmp_path / Path(env["DATA_FILE"]).name), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["/bin/sh", "-c", script.replace("sleep 5", "sleep 0.2")], env=env,
                          capture_output=True, text=True, timeout=60)


def test_index_template_job_waits_then_puts_the_template(render, fake_stack, tmp_path):
    script, env, data = job_script(render, "load-elasticsearch-index-template")
    result = run_job(script, env, data, fake_stack, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("waiting for Elasticsearch") == 2
    [(method, path, content_type, body)] = FakeStack.received
    assert (method, path, content_type) == ("PUT", "/_index_template/mw-logs", "application/json")
    sent = json.loads(body)
    assert sent == json.loads((DASHBOARDS / "logging/elasticsearch-index-template.json").read_text())
    assert sent["index_patterns"] == ["mw-logs-*"]


def test_kibana_job_imports_the_saved_objects(render, fake_stack, tmp_path):
    script, env, data = job_script(render, "load-kibana-saved-objects")
    result = run_job(script, env, data, fake_stack, tmp_path)
    assert result.returncode == 0, result.stderr
    [(method, path, xsrf, body)] = FakeStack.received
    assert (method, path, xsrf) == ("POST", "/api/saved_objects/_import?overwrite=true", "true")
    assert (DASHBOARDS / "logging/kibana-saved-objects.ndjson").read_bytes().strip() in body


def test_kibana_job_fails_when_kibana_refuses_objects(render, fake_stack, tmp_path):
    FakeStack.kibana_success = False
    script, env, data = job_script(render, "load-kibana-saved-objects")
    result = run_job(script, env, data, fake_stack, tmp_path)
    assert result.returncode != 0
    assert "Kibana refused some objects" in result.stderr


def test_loader_gives_up_when_nothing_answers(render, tmp_path):
    script, env, data = job_script(render, "load-elasticsearch-index-template")
    env = {**env, "WAIT_SECONDS": "1"}
    for name, text in data.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(["/bin/sh", "-c", script.replace("sleep 5", "sleep 0.2")],
                            env={**env, "ELASTICSEARCH_URL": "http://127.0.0.1:9", "DATA_FILE": str(tmp_path / "x"),
                                 "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "did not answer" in result.stderr
