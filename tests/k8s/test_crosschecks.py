"""Checks that hold the pieces together: probes against the services' real routes, ServiceMonitors
against Services, NetworkPolicies against the real callers, and the pods' security settings."""

from __future__ import annotations

import base64
import importlib
import re
from urllib.parse import urlparse

import pytest

from .conftest import HERE, ROOT, SERVICES, WORKLOAD_KINDS, by_kind, pod_labels, pod_spec
from .test_charts import STANDALONE_VALUES, UMBRELLA_MATRIX

KIND_VALUES = UMBRELLA_MATRIX["kind"]


def umbrella(render, case="kind", monitoring=True):
    return render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX[case], monitoring=monitoring)


def all_renders(render):
    for case, values in UMBRELLA_MATRIX.items():
        yield f"umbrella-{case}", render.objects("charts/multyworkemon", values=values, monitoring=True)
    for name in SERVICES:
        yield name, render.objects(f"charts/{name}", values=STANDALONE_VALUES, monitoring=True)
    yield "observability", render.objects("k8s/observability", monitoring=True)


# ---- probes ------------------------------------------------------------------------------------

def service_routes(module: str):
    """(paths the service serves, its default port, where they came from).

    The service's own create_app when its code is there; the shared app factory of
    multyworkemon_common (where every service's health and metrics routes live) otherwise."""
    from multyworkemon_common.app import create_service_app
    from multyworkemon_common.settings import ServiceSettings

    try:
        app_module = importlib.import_module(f"{module}.app")
    except ModuleNotFoundError:
        app = create_service_app(module, ServiceSettings())
        return {r.canonical for r in app.router.resources()}, None, "multyworkemon_common.app"
    app = app_module.create_app()
    settings_classes = [value for value in vars(app_module).values()
                        if isinstance(value, type) and issubclass(value, ServiceSettings) and value.__module__ == app_module.__name__]
    port = settings_classes[0].model_fields["port"].default if settings_classes else None
    return {r.canonical for r in app.router.resources()}, port, f"{module}.app:create_app"


@pytest.mark.parametrize("chart", list(SERVICES))
def test_probe_paths_and_port_exist_in_the_service(render, chart, monkeypatch):
    for name in ("DATABASE_URL", "PORT", "SERVICE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SECRETS_DIR", str(HERE / "no-secrets-here"))
    monkeypatch.setenv("ALLOW_INSECURE", "1")  # the defaults as they are, no token: only the routes are read
    module, port = SERVICES[chart]
    routes, default_port, source = service_routes(module)
    deployment = by_kind(render.objects(f"charts/{chart}", values=STANDALONE_VALUES), "Deployment")[0]
    container = pod_spec(deployment)["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PORT"] == str(port), "the service listens on $PORT"
    if default_port is not None:
        assert default_port == port, f"{source} defaults to port {default_port}"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = container[probe]["httpGet"]
        assert get["port"] == "http"
        assert get["path"] in routes, f"{probe} {get['path']} is not a route of {source}"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert "/metrics" in routes


def test_probe_paths_match_the_conventions():
    text = (ROOT / "docs/architecture.md").read_text()
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert f"`GET {path}`" in text


# ---- ServiceMonitors ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["defaults", "kind", "production"])
def test_each_service_monitor_selects_its_service_and_port(render, case):
    objects = umbrella(render, case)
    monitors = by_kind(objects, "ServiceMonitor")
    assert len(monitors) == len(by_kind(objects, "Deployment")) == 4
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        services = [s for s in by_kind(objects, "Service")
                    if selector.items() <= s["metadata"]["labels"].items()]
        assert len(services) == 1, f"{monitor['metadata']['name']} selects {len(services)} Services"
        port_names = {p["name"] for p in services[0]["spec"]["ports"]}
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
        # kube-prometheus-stack's Prometheus only picks ServiceMonitors with its release label.
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_the_release_label_is_the_add_on_release_name():
    import yaml
    skaffold = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
    names = [r["name"] for r in skaffold["deploy"]["helm"]["releases"]]
    assert "kube-prometheus-stack" in names
    assert "helm upgrade --install kube-prometheus-stack " in (ROOT / "k8s/install-addons.sh").read_text()
    values = yaml.safe_load((ROOT / "k8s/values/kube-prometheus-stack.yaml").read_text())
    # The selectors stay the chart's default (release label), which our objects carry.
    assert "serviceMonitorSelector" not in str(values) and "ruleSelector" not in str(values)


# ---- NetworkPolicies ---------------------------------------------------------------------------

def selects(selector: dict | None, labels: dict) -> bool:
    if selector is None:
        return False
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        present, value = expr["key"] in labels, labels.get(expr["key"])
        op = expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]) \
                or (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
    return True


def admits(objects, target_labels: dict, port_name: str, port_number: int, source_labels: dict,
           source_namespace_labels: dict, same_namespace: bool) -> bool:
    """Kubernetes NetworkPolicy semantics for ingress to a pod: allowed when no policy selects it,
    or when one of the policies selecting it has a rule matching the source and the port."""
    policies = [p for p in by_kind(objects, "NetworkPolicy") if selects(p["spec"]["podSelector"], target_labels)]
    if not policies:
        return True
    for policy in policies:
        for rule in policy["spec"].get("ingress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") in (port_name, port_number) for p in ports):
                continue
            peers = rule.get("from")
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    continue
                ns_ok = selects(peer["namespaceSelector"], source_namespace_labels) if "namespaceSelector" in peer else same_namespace
                pod_ok = selects(peer["podSelector"], source_labels) if "podSelector" in peer else True
                if ns_ok and pod_ok:
                    return True
    return False


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def target_of(objects, host: str, port: int):
    """The pods behind Service `host` and the container port that Service port leads to."""
    service = next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == host)
    service_port = next(p for p in service["spec"]["ports"] if p["port"] == port)
    pods = [w for w in workloads(objects) if w["kind"] in ("Deployment", "StatefulSet")
            and selects({"matchLabels": service["spec"]["selector"]}, pod_labels(w))]
    assert len(pods) == 1, f"Service {host} selects {len(pods)} workloads"
    container_ports = {p["name"]: p["containerPort"] for c in pod_spec(pods[0])["containers"] for p in c.get("ports", [])}
    name = service_port["targetPort"]
    assert name in container_ports, f"Service {host} targets port {name}, which the pod does not name"
    return pods[0], name, container_ports[name]


def calls(objects):
    """(caller workload, host, port) for every service URL a workload is configured with."""
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(objects, "ConfigMap")}
    secrets = {s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (s.get("data") or {}).items()}
               for s in by_kind(objects, "Secret")}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        settings = {}
        for container in spec["containers"]:
            for source in container.get("envFrom", []):
                settings.update(configmaps.get(source.get("configMapRef", {}).get("name"), {}))
        for volume in spec.get("volumes", []):
            for source in volume.get("projected", {}).get("sources", []):
                secret = secrets.get(source.get("secret", {}).get("name"), {})
                keys = [i["key"] for i in source["secret"].get("items", [])] or list(secret)
                settings.update({k: secret[k] for k in keys if k in secret})
        for key, value in settings.items():
            if key.endswith("_URL") and re.match(r"^(http|postgresql)://", str(value)):
                url = urlparse(value)
                yield workload, key, url.hostname, url.port


@pytest.mark.parametrize("case", ["defaults", "kind"])
def test_network_policies_let_the_real_callers_through(render, case):
    objects = umbrella(render, case)
    seen = set()
    for caller, key, host, port in calls(objects):
        target, port_name, port_number = target_of(objects, host, port)
        assert admits(objects, pod_labels(target), port_name, port_number, pod_labels(caller), {}, True), \
            f"{caller['metadata']['name']} ({key}) is refused by {host}:{port}"
        seen.add((caller["metadata"]["name"].removeprefix("mw-"), key))
    # The calls the design has: secretary -> guesser, analyst; communicator -> secretary; and
    # every database user -> PostgreSQL.
    assert {("ai-secretary", "GUESSER_URL"), ("ai-secretary", "ANALYST_URL"),
            ("ai-communicator", "SECRETARY_URL"), ("ai-secretary", "DATABASE_URL"),
            ("ai-systemanalitic", "DATABASE_URL"), ("ai-communicator", "DATABASE_URL")} <= seen


def test_network_policies_keep_the_wrong_callers_out(render):
    objects = umbrella(render, "defaults")
    labels = {w["metadata"]["name"].removeprefix("mw-"): pod_labels(w) for w in workloads(objects)}
    guesser = labels["ai-guesser"]
    for caller in ("ai-communicator", "ai-systemanalitic", "postgresql"):
        assert not admits(objects, guesser, "http", 8001, labels[caller], {}, True), caller
    assert not admits(objects, labels["postgresql"], "postgresql", 5432, labels["ai-guesser"], {}, True)
    # Another namespace: only Prometheus's.
    assert not admits(objects, labels["ai-secretary"], "http", 8000, {"app": "x"}, {"kubernetes.io/metadata.name": "default"}, False)


@pytest.mark.parametrize("case", ["defaults", "kind"])
def test_prometheus_and_helm_tests_may_reach_every_service(render, case):
    objects = umbrella(render, case)
    monitoring_ns = {"kubernetes.io/metadata.name": "monitoring"}
    for deployment in by_kind(objects, "Deployment"):
        target = pod_labels(deployment)
        assert admits(objects, target, "http", 0, {"app.kubernetes.io/name": "prometheus"}, monitoring_ns, False)
    for pod in by_kind(objects, "Pod"):
        url = urlparse(pod_spec(pod)["containers"][0]["command"][-1])
        target, port_name, port_number = target_of(objects, url.hostname, url.port)
        assert admits(objects, pod_labels(target), port_name, port_number, pod_labels(pod), {}, True)
        assert not selects({"matchLabels": next(s for s in by_kind(objects, "Service") if s["metadata"]["name"] == url.hostname)["spec"]["selector"]}, pod_labels(pod)), \
            "a helm test pod must not become an endpoint of the Service it tests"


# ---- security and resources ----------------------------------------------------------------------

def test_no_container_runs_as_root_or_without_limits(render):
    checked = 0
    for name, objects in all_renders(render):
        for workload in workloads(objects):
            spec = pod_spec(workload)
            pod_context = spec.get("securityContext", {})
            for container in spec.get("initContainers", []) + spec["containers"]:
                where = f"{name}: {workload['kind']} {workload['metadata']['name']}/{container['name']}"
                context = {**pod_context, **container.get("securityContext", {})}
                assert context.get("runAsNonRoot") is True, where
                assert context.get("runAsUser", 1) != 0, where
                assert context.get("allowPrivilegeEscalation") is False, where
                assert "ALL" in context.get("capabilities", {}).get("drop", []), where
                assert context.get("seccompProfile", {}).get("type") == "RuntimeDefault", where
                limits = container.get("resources", {}).get("limits", {})
                assert "cpu" in limits and "memory" in limits, f"{where} has no limits"
                assert container.get("resources", {}).get("requests"), f"{where} has no requests"
                if name != "observability":
                    assert context.get("readOnlyRootFilesystem") is True, where
                checked += 1
    assert checked > 40


def test_service_accounts_mount_no_token(render):
    for name, objects in all_renders(render):
        for workload in workloads(objects):
            assert pod_spec(workload).get("automountServiceAccountToken") is False, f"{name} {workload['metadata']['name']}"


def test_a_changed_setting_rolls_the_pods(render):
    def checksum(sets):
        deployment = by_kind(render.objects("charts/ai-guesser", values=STANDALONE_VALUES, sets=sets), "Deployment")[0]
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum(()) != checksum(("config.LOG_LEVEL=debug",))
    assert checksum(()) != checksum(("files.system-prompt\\.txt=Be brief.",))


def test_saved_files_are_mounted_and_named_in_the_settings(render):
    objects = render.objects("charts/ai-secretary", values=STANDALONE_VALUES, sets=("files.users\\.yaml=users: []",))
    container = pod_spec(by_kind(objects, "Deployment")[0])["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["USERS_FILE"] == "/etc/multyworkemon/files/users.yaml"
    assert {"name": "files", "mountPath": "/etc/multyworkemon/files", "readOnly": True} in container["volumeMounts"]
    files = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-files"))
    assert files["data"] == {"users.yaml": "users: []"}


# ---- migrations ------------------------------------------------------------------------------------

def test_no_install_hooks_so_wait_and_gitops_see_a_plain_rollout(render):
    """Issue 11: a post-install migration Job ran only after `helm install --wait` succeeded, while
    the pods stayed unready until it ran (a deadlock). Now the only hooks are `helm test` pods; Argo
    CD and Flux, which order hooks their own way, get the same plain Deployments."""
    for name, objects in all_renders(render):
        if name == "observability":
            continue  # its loader Jobs are post-install hooks nothing in the release waits for
        assert not by_kind(objects, "Job"), name
        for obj in objects:
            hook = obj["metadata"].get("annotations", {}).get("helm.sh/hook")
            assert hook in (None, "test"), f"{name}: {obj['kind']} {obj['metadata']['name']} is a {hook} hook"


@pytest.mark.parametrize("case", ["defaults", "kind", "production"])
def test_the_database_services_migrate_on_start_and_wait_for_the_schema(render, case):
    """The secretary's and the analyst's pods migrate on start (an advisory lock lets replicas race) and
    report ready only when no migration is pending, so a rollout of new code applies its migrations."""
    from multyworkemon_common.settings import DatabaseSettings

    assert DatabaseSettings.model_fields["migrate_on_start"].default is True
    deployments = {d["metadata"]["name"]: d for d in by_kind(umbrella(render, case), "Deployment")}
    for name in ("mw-ai-secretary", "mw-ai-systemanalitic"):
        container = pod_spec(deployments[name])["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env.get("MIGRATE_ON_START", "true") == "true", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
        # No surge pod is taken away before a new one is ready (it is ready once migrated).
        assert deployments[name]["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_placeholder_secrets_only(render):
    """The charts' own values hold no credential: every chart-made Secret in the default render is
    empty or made of what the release generates (the database password, the service token)."""
    for objects in (umbrella(render, "defaults"),):
        for secret in by_kind(objects, "Secret"):
            if secret["metadata"]["name"] in ("mw-postgresql", "mw-service-token"):
                continue
            assert not secret.get("data"), secret["metadata"]["name"]


def test_notes_say_how_to_reach_the_api(helm, charts, tmp_path):
    """NOTES.txt rendered for a release named mw (helm template leaves NOTES out and helm install
    --dry-run wants a cluster here, so the test renders the same template inside a ConfigMap)."""
    import shutil

    import yaml

    from .conftest import KUBE_VERSIONS, run

    chart = tmp_path / "multyworkemon"
    shutil.copytree(charts / "charts/multyworkemon", chart)
    notes = (chart / "templates/NOTES.txt").read_text()
    (chart / "templates/NOTES.txt").unlink()
    (chart / "templates/zz-notes.yaml").write_text(
        '{{- define "notes-check" -}}\n' + notes + '\n{{- end }}\n'
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
        '  notes: {{ include "notes-check" . | toJson }}\n')
    out = run([helm, "template", "mw", str(chart), "--namespace", "multyworkemon", "--kube-version",
               KUBE_VERSIONS[-1], "--show-only", "templates/zz-notes.yaml"]).stdout
    text = yaml.safe_load(out)["data"]["notes"]
    assert "kubectl --namespace multyworkemon port-forward svc/mw-ai-secretary 8000:8000" in text
    # /analyze-request wants the token: the notes say where it is.
    assert "get secret mw-service-token -o jsonpath='{.data.SERVICE_TOKEN}'" in text
    assert 'curl -H "X-Service-Token: $TOKEN" \'http://127.0.0.1:8000/analyze-request?' in text
    assert "kubectl --namespace multyworkemon port-forward svc/mw-ai-communicator 8003:8003" in text
    assert "helm test mw --namespace multyworkemon" in text
