"""skaffold.yaml and kind-config.yaml against the charts, services/Dockerfile and the add-ons.

No skaffold binary or Docker engine here: these check every name, path, key and port skaffold
and kind would use; `skaffold dev` itself is run by the user (docs/kubernetes.md)."""

from __future__ import annotations

import copy
import fnmatch
import re
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, SERVICES, by_kind, chart_values, pod_spec
from .test_charts import UMBRELLA_MATRIX

SKAFFOLD = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
KIND = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
RELEASES = {r["name"]: r for r in SKAFFOLD["deploy"]["helm"]["releases"]}
VERSIONS = dict(line.split("=", 1) for line in (ROOT / "k8s/versions.env").read_text().splitlines()
                if line and not line.startswith("#"))


def dig(tree: dict, dotted: str):
    node = tree
    for part in dotted.split("."):
        assert isinstance(node, dict) and part in node, f"{dotted}: no {part!r}"
        node = node[part]
    return node


def template_key(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", image)


def test_schema_version_is_current():
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta13"
    assert SKAFFOLD["kind"] == "Config"


def test_every_artifact_matches_its_dockerfile_and_chart():
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {f"multyworkemon/{name}" for name in SERVICES}
    for name in SERVICES:
        artifact = artifacts[f"multyworkemon/{name}"]
        assert artifact["context"] == "."
        dockerfile = ROOT / artifact["context"] / artifact["docker"]["dockerfile"]
        assert dockerfile == ROOT / "services" / "Dockerfile" and dockerfile.is_file()
        stages = re.findall(r"^FROM \S+ AS (\S+)$", dockerfile.read_text(), re.M)
        assert artifact["docker"]["target"] in stages
        # The one Dockerfile is told which service to build; every build arg given is one it declares.
        assert artifact["docker"]["buildArgs"]["SERVICE"] == name
        declared = set(re.findall(r"^ARG (\w+)", dockerfile.read_text(), re.M))
        assert set(artifact["docker"]["buildArgs"]) <= declared
        # The chart's default is the image the release workflow publishes; skaffold sets its own.
        assert chart_values(name)["image"]["repository"] == f"ghcr.io/{artifact['image']}"
    assert SKAFFOLD["build"]["local"]["push"] is False, "images are loaded into kind, not pushed"


def test_file_sync_reaches_the_dev_image_sources():
    """Synced files land where the dev stage keeps the editable sources, and the globs match files."""
    for artifact in SKAFFOLD["build"]["artifacts"]:
        service = artifact["docker"]["buildArgs"]["SERVICE"]
        dockerfile = (ROOT / artifact["docker"]["dockerfile"]).read_text().replace("${SERVICE}", service)
        dev = dockerfile.split("AS dev\n", 1)[1].split("\nFROM ", 1)[0]
        copied = re.search(r"COPY --from=dev-venv --chown=\S+ (\S+) (\S+)", dev)
        assert copied and copied.group(1) == copied.group(2) == "/src/services"
        assert '"--watch", "/src/services"' in dev
        # The builder copies the synced sources to /src/<path in the repository>, the sync destination.
        builder = dockerfile.split("AS builder\n", 1)[1].split("\nFROM ", 1)[0]
        copied_sources = set(re.findall(r"^COPY (services/\S+/src) \1$", builder, re.M))
        assert copied_sources == {"services/common/src", f"services/{service}/src"}
        assert re.search(r"^WORKDIR /src$", builder, re.M)
        for rule in artifact["sync"]["manual"]:
            assert rule["dest"] == "/src" and "strip" not in rule
            assert rule["src"].split("/**", 1)[0] in copied_sources, f"{rule['src']}: not in {service}'s image"
            matches = [p for p in ROOT.glob("services/*/src/**/*.py") if fnmatch.fnmatch(str(p.relative_to(ROOT)), rule["src"].replace("**/", "*"))]
            assert matches, f"{rule['src']} matches no file"


def test_set_value_templates_name_real_values_and_artifacts():
    release = RELEASES["multyworkemon"]
    assert release["chartPath"] == "charts/multyworkemon"
    images = {template_key(a["image"]) for a in SKAFFOLD["build"]["artifacts"]}
    umbrella = {name: chart_values(name) for name in SERVICES}
    for key, template in release["setValueTemplates"].items():
        chart, dotted = key.split(".", 1)
        dig(umbrella[chart], dotted)
        used = re.findall(r"\{\{\.IMAGE_(?:REPO|TAG)_(\w+)\}\}", template)
        assert used and set(used) <= images, template
        assert f"multyworkemon/{chart}" == next(a["image"] for a in SKAFFOLD["build"]["artifacts"] if template_key(a["image"]) == used[0])
    for key in release["setValues"]:
        chart, dotted = key.split(".", 1)
        dig(umbrella[chart], dotted)
    for file in release["valuesFiles"]:
        assert (ROOT / file).is_file()


def test_skaffold_render_is_valid_and_uses_the_built_images(render):
    """The umbrella as skaffold installs it: kind values, setValues, templates filled in."""
    release = RELEASES["multyworkemon"]
    sets = [f"{k}={v}" for k, v in release["setValues"].items()]
    for key, template in release["setValueTemplates"].items():
        value = re.sub(r"\{\{\.IMAGE_REPO_\w+\}\}", f"multyworkemon/{key.split('.')[0]}", template)
        value = re.sub(r"\{\{\.IMAGE_TAG_\w+\}\}", "0123abcd", value)
        sets.append(f"{key}={value}")
    objects = render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX["kind"], sets=tuple(sets), monitoring=True,
                             namespace=release["namespace"], release=release["name"])
    images = {c["image"] for d in by_kind(objects, "Deployment") for c in pod_spec(d)["containers"]}
    assert images == {f"multyworkemon/{name}:0123abcd" for name in SERVICES}


def test_releases_match_the_add_on_script_and_versions():
    order = [r["name"] for r in SKAFFOLD["deploy"]["helm"]["releases"]]
    assert order == ["kube-prometheus-stack", "multyworkemon-observability", "fluent-bit", "multyworkemon"]
    assert SKAFFOLD["deploy"]["helm"]["concurrency"] == 1
    assert RELEASES["kube-prometheus-stack"]["version"] == VERSIONS["KUBE_PROMETHEUS_STACK_VERSION"]
    assert RELEASES["fluent-bit"]["version"] == VERSIONS["FLUENT_BIT_CHART_VERSION"]
    assert RELEASES["multyworkemon-observability"]["chartPath"] == "k8s/observability"
    script = (ROOT / "k8s/install-addons.sh").read_text()
    for release in ("kube-prometheus-stack", "multyworkemon-observability", "fluent-bit"):
        spec = RELEASES[release]
        assert spec["namespace"] == "monitoring"
        assert f"helm upgrade --install {release} " in script
        for file in spec.get("valuesFiles", []):
            assert (ROOT / file).is_file() and f"--values {file}" in script
        for key, file in spec.get("setFiles", {}).items():
            assert (ROOT / file).is_file() and f"--set-file {key}={file}" in script
    assert SKAFFOLD["deploy"]["kubeContext"] == f"kind-{KIND['name']}"


def test_port_forwards_name_rendered_services(render):
    rendered = {}
    release = RELEASES["multyworkemon"]
    for obj in render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX["kind"], release=release["name"]):
        if obj["kind"] == "Service":
            rendered[(release["namespace"], obj["metadata"]["name"])] = {p["port"] for p in obj["spec"]["ports"]}
    for obj in render.objects("k8s/observability"):
        if obj["kind"] == "Service":
            rendered[("monitoring", obj["metadata"]["name"])] = {p["port"] for p in obj["spec"]["ports"]}
    # kube-prometheus-stack's own Services (not renderable here: its chart is not on a package
    # registry): <release>-grafana on 80 and <release>-prometheus on 9090.
    rendered[("monitoring", "kube-prometheus-stack-grafana")] = {80}
    rendered[("monitoring", "kube-prometheus-stack-prometheus")] = {9090}
    local_ports = set()
    for forward in SKAFFOLD["portForward"]:
        assert forward["resourceType"] == "service"
        assert forward["port"] in rendered[(forward["namespace"], forward["resourceName"])], forward
        local_ports.add(forward["localPort"])
    assert {8000, 8003, 3000, 5601} <= local_ports
    # kind maps node ports on the host; none may clash with a port-forward.
    assert not local_ports & {m["hostPort"] for m in KIND["nodes"][0]["extraPortMappings"]}


def apply_patches(config: dict, patches: list[dict]) -> dict:
    config = copy.deepcopy(config)
    for patch in patches:
        assert patch["op"] == "remove"
        *parents, last = patch["path"].strip("/").split("/")
        node = config
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[int(last) if isinstance(node, list) else last]
    return config


def test_no_addons_profile_keeps_only_the_system():
    profile = next(p for p in SKAFFOLD["profiles"] if p["name"] == "no-addons")
    patched = apply_patches(SKAFFOLD, profile["patches"])
    assert [r["name"] for r in patched["deploy"]["helm"]["releases"]] == ["multyworkemon"]
    assert {f["resourceName"] for f in patched["portForward"]} == {"multyworkemon-ai-secretary", "multyworkemon-ai-communicator"}


def test_kind_maps_exactly_the_node_ports_in_use(render):
    mappings = KIND["nodes"][0]["extraPortMappings"]
    for mapping in mappings:
        assert mapping["containerPort"] == mapping["hostPort"]
        assert mapping["listenAddress"] == "127.0.0.1" and mapping["protocol"] == "TCP"
    node_ports = set()
    for objects in (render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX["kind"]), render.objects("k8s/observability")):
        for service in by_kind(objects, "Service"):
            node_ports |= {p["nodePort"] for p in service["spec"]["ports"] if "nodePort" in p}
    stack = yaml.safe_load((ROOT / "k8s/values/kube-prometheus-stack.yaml").read_text())
    node_ports |= {stack["grafana"]["service"]["nodePort"], stack["prometheus"]["service"]["nodePort"]}
    assert {m["containerPort"] for m in mappings} == node_ports


def test_kind_config_shape():
    """The fields kind v1alpha4 knows (kind itself cannot load a config without a container runtime)."""
    assert KIND["kind"] == "Cluster" and KIND["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert set(KIND) <= {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                         "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
                         "containerdConfigPatchesJSON6902"}
    assert [n["role"] for n in KIND["nodes"]] == ["control-plane"]
    for node in KIND["nodes"]:
        assert set(node) <= {"role", "image", "extraMounts", "extraPortMappings", "labels", "kubeadmConfigPatches",
                             "kubeadmConfigPatchesJSON6902"}
        assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", node["image"])
        for mapping in node["extraPortMappings"]:
            assert set(mapping) <= {"containerPort", "hostPort", "listenAddress", "protocol"}


def test_kind_node_image_is_the_pinned_kind_default():
    """kind-config.yaml pins the node image kind v0.32.0 was released with (from its Go module)."""
    import json
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "go.mod").write_text("module check\n")
        info = subprocess.run(["go", "mod", "download", "-json", "sigs.k8s.io/kind@v0.32.0"], cwd=scratch,
                              capture_output=True, text=True, check=True)
    source = Path(json.loads(info.stdout)["Dir"], "pkg/apis/config/defaults/image.go").read_text()
    assert KIND["nodes"][0]["image"] in source
    assert "sigs.k8s.io/kind@v0.32.0" in (ROOT / "scripts/go-tools.txt").read_text()
