"""What the values promise a real cluster (issue 11): PostgreSQL connections that fit, the kind
values answering like `make run`, component labels, peer URLs that follow the Service ports, replicas
spread over nodes, a numeric PostgreSQL tag, and no chart archive in git."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import re
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, SERVICES, by_kind, pod_labels, pod_spec
from .test_charts import STANDALONE_VALUES, UMBRELLA_MATRIX
from .test_crosschecks import calls, target_of, umbrella, workloads

# ---- PostgreSQL connections ----------------------------------------------------------------------

RESERVED_CONNECTIONS = 3  # PostgreSQL's superuser_reserved_connections default
DEFAULT_MAX_CONNECTIONS = 100


def settings_class(chart: str):
    from multyworkemon_common.settings import ServiceSettings

    module = SERVICES[chart][0]
    for name in ("settings", "app"):
        try:
            found = importlib.import_module(f"{module}.{name}")
        except ModuleNotFoundError:
            continue
        for value in vars(found).values():
            if isinstance(value, type) and issubclass(value, ServiceSettings) and value.__module__ == found.__name__:
                return value
    raise AssertionError(f"no settings class in {module}")


def connections_needed(objects) -> dict[str, int]:
    """Per database client Deployment, the most connections its pods can hold at once: every pod
    the HPA may run plus the rollout's surge pod, each with its full pool (DATABASE_POOL_MAX from the
    rendered settings, else the service's default) and the migration connection it opens at start;
    a service without a pool (the communicator) holds one lock connection per pod."""
    from multyworkemon_common.settings import DatabaseSettings

    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in by_kind(objects, "ConfigMap")}
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind(objects, "HorizontalPodAutoscaler")}
    needed = {}
    for deployment in by_kind(objects, "Deployment"):
        if pod_labels(deployment).get("multyworkemon.io/database-client") != "true":
            continue
        name = deployment["metadata"]["name"]
        chart = pod_labels(deployment)["app.kubernetes.io/name"]
        hpa = autoscalers.get(name)
        pods = hpa["spec"]["maxReplicas"] if hpa else deployment["spec"]["replicas"]
        pods += int(deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"])
        settings = {}
        for source in pod_spec(deployment)["containers"][0].get("envFrom", []):
            settings.update(configmaps.get(source["configMapRef"]["name"], {}))
        cls = settings_class(chart)
        if issubclass(cls, DatabaseSettings):
            pool = int(settings.get("DATABASE_POOL_MAX", cls.model_fields["database_pool_max"].default))
            needed[chart] = pods * (pool + 1)
        else:
            needed[chart] = pods
    return needed


def max_connections(objects) -> int:
    statefulset = next(s for s in by_kind(objects, "StatefulSet") if s["metadata"]["name"].endswith("-postgresql"))
    args = " ".join(pod_spec(statefulset)["containers"][0].get("args", []))
    found = re.search(r"max_connections=(\d+)", args)
    return int(found.group(1)) if found else DEFAULT_MAX_CONNECTIONS


@pytest.mark.parametrize("case", ["defaults", "kind"])
def test_bundled_postgresql_admits_every_pool_at_full_scale(render, case):
    objects = umbrella(render, case)
    needed = connections_needed(objects)
    assert set(needed) == {"ai-secretary", "ai-systemanalitic", "ai-communicator"}
    assert sum(needed.values()) <= max_connections(objects) - RESERVED_CONNECTIONS, needed


def test_connection_figures_in_the_values_are_current(render):
    """The sum the values comments give is the one the defaults render to, and the production values
    (an external database) tell the operator the max_connections it needs."""
    production_need = sum(connections_needed(umbrella(render, "production")).values())
    needed = sum(connections_needed(umbrella(render, "defaults")).values())
    umbrella_values = (ROOT / "charts/multyworkemon/values.yaml").read_text()
    assert f"worst case is {needed}:" in umbrella_values
    stated = re.search(r"max_connections of at least (\d+)", (ROOT / "charts/multyworkemon/values-production.yaml").read_text())
    assert stated and int(stated.group(1)) >= production_need


# ---- the kind values answer like `make run` ------------------------------------------------------

def run_local_env() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("run_local", ROOT / "scripts/run_local.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.system_env("postgresql://unused")


def mounted_files(objects, deployment_name: str, setting: str) -> tuple[str, dict[str, str]]:
    """(the setting's value, {file name: content} of the ConfigMap mounted at that path)."""
    deployment = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == deployment_name)
    container = pod_spec(deployment)["containers"][0]
    value = {e["name"]: e.get("value") for e in container["env"]}[setting]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    for mount in container["volumeMounts"]:
        if value == mount["mountPath"] or value.startswith(mount["mountPath"] + "/"):
            configmap = volumes[mount["name"]]["configMap"]["name"]
            return value, next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == configmap)["data"]
    raise AssertionError(f"{setting}={value} is not mounted")


def test_kind_loads_the_sample_users_and_knowledge_like_make_run(render):
    env = run_local_env()
    objects = umbrella(render, "kind")
    users_file, files = mounted_files(objects, "mw-ai-secretary", "USERS_FILE")
    assert files[Path(users_file).name] == Path(env["USERS_FILE"]).read_text()
    knowledge_dir, documents = mounted_files(objects, "mw-ai-systemanalitic", "KNOWLEDGE_DIR")
    expected = {p.name: p.read_text() for p in Path(env["KNOWLEDGE_DIR"]).glob("*.md")}
    assert expected and documents == expected
    # Without global.samples nothing of it is loaded.
    defaults = umbrella(render, "defaults")
    env_names = {e["name"] for d in by_kind(defaults, "Deployment") for e in pod_spec(d)["containers"][0]["env"]}
    assert not {"USERS_FILE", "KNOWLEDGE_DIR"} & env_names


def test_a_file_in_values_wins_over_the_sample(render):
    objects = render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX["kind"],
                             sets=("ai-secretary.files.users\\.yaml=users: []",))
    _, files = mounted_files(objects, "mw-ai-secretary", "USERS_FILE")
    assert files == {"users.yaml": "users: []"}


# ---- labels, ports, spread, tags -----------------------------------------------------------------

@pytest.mark.parametrize("case", list(UMBRELLA_MATRIX))
def test_every_object_and_pod_names_its_component(render, case):
    objects = umbrella(render, case)
    components = {}
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/component"), f"{obj['kind']} {obj['metadata']['name']}"
        components.setdefault(labels.get("app.kubernetes.io/name"), set()).add(labels["app.kubernetes.io/component"])
    for workload in workloads(objects):
        assert pod_labels(workload).get("app.kubernetes.io/component"), workload["metadata"]["name"]
    # One component per service, and selectors stay name + instance (a selector cannot change on upgrade).
    for name in SERVICES:
        assert len(components[name]) == 1, (name, components[name])
    for deployment in by_kind(objects, "Deployment"):
        assert set(deployment["spec"]["selector"]["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}


def test_peer_urls_follow_the_service_ports(render):
    ports = {"ai-secretary": 9100, "ai-guesser": 9101, "ai-systemanalitic": 9102, "ai-communicator": 9103}
    objects = render.objects("charts/multyworkemon", sets=tuple(f"global.servicePorts.{k}={v}" for k, v in ports.items()))
    for service in by_kind(objects, "Service"):
        name = service["metadata"]["labels"]["app.kubernetes.io/name"]
        if name in ports:
            assert [p["port"] for p in service["spec"]["ports"]] == [ports[name]]
    seen = set()
    for caller, key, host, port in calls(objects):
        target_of(objects, host, port)  # a Service of that name serves that port
        seen.add(key)
    assert {"GUESSER_URL", "ANALYST_URL", "SECRETARY_URL"} <= seen
    # The helm test pods ask the moved ports too.
    for pod in by_kind(objects, "Pod"):
        assert re.search(r":91\d\d/health/ready$", pod_spec(pod)["containers"][0]["command"][-1])


def spread(objects) -> dict[str, list]:
    return {d["metadata"]["name"]: pod_spec(d).get("topologySpreadConstraints", []) for d in by_kind(objects, "Deployment")}


def test_two_or_more_replicas_spread_over_nodes_and_zones(render):
    defaults = spread(umbrella(render, "defaults"))
    for name in ("mw-ai-secretary", "mw-ai-guesser", "mw-ai-systemanalitic"):
        keys = {c["topologyKey"]: c for c in defaults[name]}
        assert set(keys) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        for constraint in keys.values():
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"  # one-node clusters still schedule
            assert constraint["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == name.removeprefix("mw-")
    assert defaults["mw-ai-communicator"] == []  # one replica: nothing to spread
    assert all(not value for value in spread(umbrella(render, "kind")).values())
    own = [{"maxSkew": 2, "topologyKey": "example.com/rack", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "ai-guesser"}}}]
    objects = render.objects("charts/ai-guesser", values=STANDALONE_VALUES, sets=("topologySpreadConstraints[0].maxSkew=2",
                                                        "topologySpreadConstraints[0].topologyKey=example.com/rack",
                                                        "topologySpreadConstraints[0].whenUnsatisfiable=DoNotSchedule",
                                                        "topologySpreadConstraints[0].labelSelector.matchLabels.app\\.kubernetes\\.io/name=ai-guesser"))
    assert spread(objects)["mw-ai-guesser"] == own


def test_postgresql_image_tag_may_be_a_number(render, helm, charts):
    objects = render.objects("charts/multyworkemon", sets=("postgresql.image.tag=15",))
    statefulset = next(s for s in by_kind(objects, "StatefulSet") if s["metadata"]["name"] == "mw-postgresql")
    assert pod_spec(statefulset)["containers"][0]["image"] == "postgres:15"
    assert statefulset["metadata"]["labels"]["app.kubernetes.io/version"] == "15"
    # A decimal number would lose its trailing zeros (16.10 -> 16.1): the schema asks for quotes.
    result = subprocess.run([helm, "template", "mw", str(charts / "charts/multyworkemon"),
                             "--set-json", "postgresql.image.tag=16.1"], capture_output=True, text=True)
    assert result.returncode != 0 and "tag" in result.stderr


def test_no_chart_archive_is_committed():
    tracked = subprocess.run(["git", "ls-files", "charts"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [path for path in tracked if path.endswith(".tgz") or "/charts/" in path or path.endswith("Chart.lock")]
    ignored = subprocess.run(["git", "check-ignore", "-q", "--no-index", "charts/ai-secretary/charts/multyworkemon-lib-0.1.0.tgz"], cwd=ROOT)
    assert ignored.returncode == 0, "charts/.gitignore must ignore what helm dependency build writes"
