"""Writes the JSON schemas of the prometheus-operator CRD objects the charts render.

Source: the CRD manifests in the prometheus-operator Go module at the version kube-prometheus-stack
ships (k8s/versions.env), from the Go module proxy. Output: schemas/<group>/<kind>_<version>.json in
the layout kubeconform reads, strict like Kubernetes' own -strict schemas (no unknown fields).
Run again after changing PROMETHEUS_OPERATOR_VERSION:

    uv run --frozen python tests/k8s/vendor_crd_schemas.py
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).resolve().parent / "schemas"
CRDS = ["servicemonitors", "prometheusrules"]


def operator_version() -> str:
    for line in (ROOT / "k8s" / "versions.env").read_text().splitlines():
        if line.startswith("PROMETHEUS_OPERATOR_VERSION="):
            return line.split("=", 1)[1].strip()
    raise SystemExit("PROMETHEUS_OPERATOR_VERSION missing from k8s/versions.env")


def strict(node):
    """Kubernetes' structural schema -> JSON schema that refuses unknown fields."""
    if isinstance(node, list):
        return [strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: strict(value) for key, value in node.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields")
    if "properties" in out and "additionalProperties" not in out and not preserve:
        out["additionalProperties"] = False
    return out


def main() -> None:
    version = operator_version()
    module = f"github.com/prometheus-operator/prometheus-operator@{version}"
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "go.mod").write_text("module vendor\n")
        info = subprocess.run(["go", "mod", "download", "-json", module], cwd=scratch,
                              check=True, capture_output=True, text=True)
    source = Path(json.loads(info.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    for name in CRDS:
        crd = yaml.safe_load((source / f"monitoring.coreos.com_{name}.yaml").read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for served in crd["spec"]["versions"]:
            schema = strict(served["schema"]["openAPIV3Schema"])
            schema["properties"]["apiVersion"] = {"type": "string", "enum": [f"{group}/{served['name']}"]}
            schema["properties"]["kind"] = {"type": "string", "enum": [kind]}
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "spec"})
            schema["$comment"] = f"{kind} {served['name']} from {module} (tests/k8s/vendor_crd_schemas.py)"
            target = OUT / group / f"{kind.lower()}_{served['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
            print(target.relative_to(ROOT))


if __name__ == "__main__":
    main()
