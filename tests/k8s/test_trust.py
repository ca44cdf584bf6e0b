"""Issue 10 in the charts: one SERVICE_TOKEN per release from a Secret (generated once and kept, or
yours), never from values; the optional oauth2-proxy in front of the web chat, and the web chat
trusting its identity header from the proxy only; the communicator's identity and mail settings."""

from __future__ import annotations

import base64
import shutil
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from .conftest import HERE, KUBE_VERSIONS, ROOT, SERVICES, by_kind, library_defaults, pod_labels, pod_spec, run
from .test_charts import STANDALONE_VALUES, UMBRELLA_MATRIX
from .test_crosschecks import admits, target_of, umbrella

SECRETS_DIR = "/run/secrets/multyworkemon"


def secret_data(objects, name: str) -> dict[str, str]:
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == name)
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def token_sources(deployment: dict) -> list[dict]:
    """The projected sources of the volume mounted at the secrets folder the service reads."""
    container = pod_spec(deployment)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == env["SECRETS_DIR"])
    assert env["SECRETS_DIR"] == SECRETS_DIR
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == mount["name"])
    return volume["projected"]["sources"]


# ---- the service token -----------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["defaults", "kind"])
def test_the_umbrella_generates_one_token_that_every_service_reads(render, case):
    objects = umbrella(render, case)
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == "mw-service-token")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    token = secret_data(objects, "mw-service-token")["SERVICE_TOKEN"]
    assert len(token) == 48 and token.isalnum()
    deployments = by_kind(objects, "Deployment")
    assert {pod_labels(d)["app.kubernetes.io/name"] for d in deployments} == set(SERVICES)
    for deployment in deployments:
        # Last, so it wins over a SERVICE_TOKEN key in the Secret projected before it.
        last = token_sources(deployment)[-1]["secret"]
        assert last == {"name": "mw-service-token", "items": [{"key": "SERVICE_TOKEN", "path": "SERVICE_TOKEN"}]}
    # Random per render (a set value only gets past the render cache), so nothing in values decides it.
    again = render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX[case], sets=("ai-guesser.config.LOG_LEVEL=info",))
    assert secret_data(again, "mw-service-token")["SERVICE_TOKEN"] != token


def test_the_token_is_read_back_on_upgrades(helm, charts, tmp_path):
    """helm template cannot reach a cluster, so the part after lookup is rendered with a Secret as
    the cluster would return it, and the template is checked to look up the Secret it makes."""
    chart = tmp_path / "multyworkemon"
    shutil.copytree(charts / "charts/multyworkemon", chart)
    template = (chart / "templates/service-token.yaml").read_text()
    assert 'include "multyworkemon.serviceTokenData" (dict "existing" (lookup "v1" "Secret" .Release.Namespace $name))' in template
    (chart / "templates/zz-check.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: check\ndata:\n"
        '  kept: {{ include "multyworkemon.serviceTokenData" (dict "existing" (dict "data" (dict "SERVICE_TOKEN" "a2VwdA=="))) | quote }}\n'
        '  fresh: {{ include "multyworkemon.serviceTokenData" (dict "existing" dict) | quote }}\n')
    out = run([helm, "template", "mw", str(chart), "--kube-version", KUBE_VERSIONS[-1],
               "--show-only", "templates/zz-check.yaml"]).stdout
    data = yaml.safe_load(out)["data"]
    assert data["kept"] == "a2VwdA=="
    assert len(base64.b64decode(data["fresh"])) == 48


@pytest.mark.parametrize("sets, case, name", [
    (("global.serviceToken.existingSecret=helpdesk-token",), "defaults", "helpdesk-token"),
    ((), "production", "multyworkemon-secrets"),
])
def test_a_token_secret_of_your_own_replaces_the_generated_one(render, sets, case, name):
    objects = render.objects("charts/multyworkemon", values=UMBRELLA_MATRIX[case], sets=sets)
    assert not [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == "mw-service-token"]
    for deployment in by_kind(objects, "Deployment"):
        assert token_sources(deployment)[-1]["secret"]["name"] == name


def test_no_values_file_holds_a_token():
    files = [*ROOT.glob("charts/*/values*.yaml"), *HERE.glob("values/*.yaml")]
    trees = [yaml.safe_load(f.read_text()) or {} for f in files] + [library_defaults()]

    def walk(node, path=""):
        if isinstance(node, dict):
            for key, value in node.items():
                yield f"{path}{key}", value
                yield from walk(value, f"{path}{key}.")

    for tree in trees:
        for path, value in walk(tree):
            assert not path.endswith("SERVICE_TOKEN"), path
            if path.endswith("serviceToken"):
                assert isinstance(value, dict) and set(value) <= {"existingSecret", "generate"}, path


def test_a_service_chart_alone_must_be_given_a_token(helm, charts):
    def template(*sets):
        args = [helm, "template", "x", str(charts / "charts/ai-guesser"), "--kube-version", KUBE_VERSIONS[-1]]
        for item in sets:
            args += ["--set", item]
        return subprocess.run(args, capture_output=True, text=True)

    refused = template()
    assert refused.returncode != 0 and "ai-guesser needs SERVICE_TOKEN" in refused.stderr
    for sets in (("global.serviceToken.existingSecret=t",), ("secrets.values.SERVICE_TOKEN=x",),
                 ("secrets.existingSecret=s",), ("config.ALLOW_INSECURE=1",)):
        assert template(*sets).returncode == 0, sets


# ---- oauth2-proxy in front of the web chat ---------------------------------------------------------

def proxied():
    return yaml.safe_load((ROOT / "charts/multyworkemon/values.yaml").read_text())["global"]["oauth2Proxy"]


def communicator_config(objects) -> dict:
    return next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "mw-ai-communicator")["data"]


def test_without_the_proxy_the_web_chat_is_anonymous(render):
    objects = umbrella(render, "defaults")
    assert not [o for o in objects if "oauth2-proxy" in o["metadata"]["name"]]
    config = communicator_config(objects)
    assert "WEB_TRUSTED_PROXIES" not in config and "WEB_IDENTITY_HEADER" not in config


def test_the_proxy_signs_in_and_forwards_to_the_communicator(render):
    values = proxied()
    objects = umbrella(render, "oauth2-proxy")
    deployment = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "mw-oauth2-proxy")
    container = pod_spec(deployment)["containers"][0]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"])
    assert args["provider"] == "oidc" and args["oidc-issuer-url"] == values["oidcIssuerUrl"]
    assert args["client-id"] == values["clientId"] and args["pass-user-headers"] == "true"
    upstream = urlparse(args["upstream"])
    target, _, _ = target_of(objects, upstream.hostname, upstream.port)
    assert target["metadata"]["name"] == "mw-ai-communicator"
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert secrets["OAUTH2_PROXY_CLIENT_SECRET"] == {"name": values["existingSecret"], "key": "client-secret"}
    assert secrets["OAUTH2_PROXY_COOKIE_SECRET"] == {"name": values["existingSecret"], "key": "cookie-secret"}
    # The communicator trusts the header oauth2-proxy sets upstream, from the proxy pods' network.
    config = communicator_config(objects)
    assert config["WEB_IDENTITY_HEADER"] == values["identityHeader"] == "X-Forwarded-Email"
    assert config["WEB_TRUSTED_PROXIES"] == values["trustedCIDR"]
    # The way in is the proxy's Ingress.
    ingress = next(i for i in by_kind(objects, "Ingress") if i["metadata"]["name"] == "mw-oauth2-proxy")
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "mw-oauth2-proxy"


@pytest.mark.parametrize("extra", [(), UMBRELLA_MATRIX["kind"]], ids=["defaults", "kind"])
def test_behind_the_proxy_only_the_proxy_reaches_the_web_chat(render, extra):
    objects = render.objects("charts/multyworkemon", values=(*extra, HERE / "values/oauth2-proxy.yaml"))
    labels = {d["metadata"]["name"]: pod_labels(d) for d in by_kind(objects, "Deployment")}
    communicator = labels["mw-ai-communicator"]
    assert admits(objects, communicator, "http", 8003, labels["mw-oauth2-proxy"], {}, True)
    for caller in ("mw-ai-secretary", "mw-ai-guesser"):
        assert not admits(objects, communicator, "http", 8003, labels[caller], {}, True), caller
    ingress_ns = {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert not admits(objects, communicator, "http", 8003, {"app": "controller"}, ingress_ns, False)
    policy = next(p for p in by_kind(objects, "NetworkPolicy") if p["metadata"]["name"] == "mw-ai-communicator")
    # kind's node-port ipBlock would let anything on the pod network claim an identity.
    assert "ipBlock" not in str(policy)


def test_the_communicators_own_ingress_cannot_bypass_the_proxy(helm, charts):
    result = subprocess.run(
        [helm, "template", "mw", str(charts / "charts/multyworkemon"), "--kube-version", KUBE_VERSIONS[-1],
         "--values", str(HERE / "values/oauth2-proxy.yaml"), "--set", "ai-communicator.ingress.enabled=true"],
        capture_output=True, text=True)
    assert result.returncode != 0 and "enable global.oauth2Proxy.ingress instead" in result.stderr


def test_communicator_exposes_the_identity_and_mail_settings(render):
    settings = {"WEB_IDENTITY_HEADER": "X-Auth-Request-Email", "WEB_TRUSTED_PROXIES": "10.1.2.3,10.8.0.0/16",
                "MAIL_AUTHSERV_ID": "mx.yandex.ru", "MAIL_TRUSTED_RELAYS": "10.0.0.25", "MAIL_REPLIES_PER_HOUR": "5"}
    own = yaml.safe_load((ROOT / "charts/ai-communicator/values.yaml").read_text())["config"]
    assert set(settings) <= set(own), "named (and commented) in the communicator's values"
    objects = render.objects("charts/multyworkemon", sets=tuple(f"ai-communicator.config.{k}={v.replace(',', chr(92) + ',')}"
                                                                for k, v in settings.items()))
    config = communicator_config(objects)
    assert {k: config[k] for k in settings} == settings
