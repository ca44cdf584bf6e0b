"""Issue 13 in the charts: the analyst's semantic retrieval (EMBEDDINGS_*) as settings of its chart,
off unless a model is named; EMBEDDINGS_API_KEY a secret like LLM_API_KEY; the schema refusing what
the service would refuse at start; pgvector's image for the umbrella's bundled PostgreSQL, and a
render refused when embeddings would meet the official image, which lacks it."""

from __future__ import annotations

import base64
import re
import subprocess
from urllib.parse import urlparse

import pytest
import yaml

from .conftest import HERE, KUBE_VERSIONS, ROOT, by_kind, pod_spec
from .test_charts import STANDALONE_VALUES, UMBRELLA_MATRIX
from .test_crosschecks import umbrella
from .test_trust import secret_data

ANALYST = "charts/ai-systemanalitic"
SETTINGS = {
    "EMBEDDINGS_MODEL": "text-embedding-3-small",
    "EMBEDDINGS_QUERY_MODEL": "text-embedding-3-small-query",
    "EMBEDDINGS_BASE_URL": "https://embeddings.example.com/v1",
    "EMBEDDINGS_DIMENSIONS": "512",
    "EMBEDDINGS_BATCH_SIZE": "32",
    "EMBEDDINGS_TIMEOUT": "12.5",
    "EMBEDDINGS_MAX_RETRIES": "0",
}


def embeddings_keys(objects) -> set[str]:
    """Every EMBEDDINGS_* name in the settings, Secrets and container environments of a render."""
    found = set()
    for obj in by_kind(objects, "ConfigMap") + by_kind(objects, "Secret"):
        found |= set(obj.get("data") or {})
    for deployment in by_kind(objects, "Deployment"):
        found |= {e["name"] for e in pod_spec(deployment)["containers"][0]["env"]}
    return {key for key in found if key.startswith("EMBEDDINGS_")}


def analyst_settings(objects, tmp_path, monkeypatch):
    """The analyst's settings as its pod would read them: the rendered ConfigMap as the environment,
    the keys of the Secrets projected into its secrets folder as files there."""
    from ai_systemanalitic.app import AnalystSettings

    deployment = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"].endswith("ai-systemanalitic"))
    container = pod_spec(deployment)["containers"][0]
    configmaps = {c["metadata"]["name"]: c["data"] for c in by_kind(objects, "ConfigMap")}
    secrets = {s["metadata"]["name"]: s.get("data") or {} for s in by_kind(objects, "Secret")}
    for name in [*SETTINGS, "EMBEDDINGS_API_KEY", "LLM_API_KEY"]:
        monkeypatch.delenv(name, raising=False)
    for source in container["envFrom"]:
        for key, value in configmaps[source["configMapRef"]["name"]].items():
            monkeypatch.setenv(key, value)
    volume = next(v for v in pod_spec(deployment)["volumes"] if v["name"] == "secrets")
    for source in volume["projected"]["sources"]:
        data = secrets.get(source["secret"]["name"], {})
        for item in source["secret"].get("items") or [{"key": k, "path": k} for k in data]:
            if item["key"] in data:
                (tmp_path / item["path"]).write_bytes(base64.b64decode(data[item["key"]]))
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path))
    return AnalystSettings()


def test_embeddings_are_off_by_default(render):
    """Nothing of it is rendered unless set: an empty EMBEDDINGS_MODEL is the service's own "off"."""
    assert not embeddings_keys(render.objects(ANALYST, values=STANDALONE_VALUES))
    assert not embeddings_keys(umbrella(render, "defaults"))


def test_embeddings_settings_reach_the_analyst(render, tmp_path, monkeypatch):
    sets = [f"config.{key}={value}" for key, value in SETTINGS.items()]
    objects = render.objects(ANALYST, values=STANDALONE_VALUES,
                             sets=(*sets, "secrets.values.EMBEDDINGS_API_KEY=placeholder-key"))
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "mw-ai-systemanalitic")["data"]
    assert {key: config[key] for key in SETTINGS} == SETTINGS
    # The key is a secret: in the chart's Secret, mounted as a file, never in the ConfigMap.
    assert "EMBEDDINGS_API_KEY" not in config
    secret = next(s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == "mw-ai-systemanalitic")
    assert base64.b64decode(secret["data"]["EMBEDDINGS_API_KEY"]).decode() == "placeholder-key"
    settings = analyst_settings(objects, tmp_path, monkeypatch)
    assert settings.embeddings_model == "text-embedding-3-small"
    assert settings.embeddings_query_model == "text-embedding-3-small-query"
    assert settings.embeddings_base_url == "https://embeddings.example.com/v1"
    assert (settings.embeddings_dimensions, settings.embeddings_batch_size) == (512, 32)
    assert (settings.embeddings_timeout, settings.embeddings_max_retries) == (12.5, 0)
    assert settings.embeddings_api_key.get_secret_value() == "placeholder-key"


@pytest.mark.parametrize("sets", [("secrets.existingSecret=analyst-secrets",), ("global.existingSecret=multyworkemon-secrets",)])
def test_the_key_may_come_from_an_existing_secret(render, sets):
    """As LLM_API_KEY: an existing Secret is projected whole, so its EMBEDDINGS_API_KEY key becomes the file."""
    objects = render.objects(ANALYST, values=STANDALONE_VALUES, sets=sets)
    assert not by_kind(objects, "Secret")
    volume = next(v for v in pod_spec(by_kind(objects, "Deployment")[0])["volumes"] if v["name"] == "secrets")
    first = volume["projected"]["sources"][0]["secret"]
    assert first == {"name": sets[0].split("=")[1]}


# The schema refuses what the service (EmbeddingsSettings) refuses at start, as a number (--set) and
# as a quoted one (--set-string, what a values file usually holds), and takes the bounds.
VERDICTS = [
    ("EMBEDDINGS_DIMENSIONS", "1", True), ("EMBEDDINGS_DIMENSIONS", "2000", True),
    ("EMBEDDINGS_DIMENSIONS", "2001", False), ("EMBEDDINGS_DIMENSIONS", "0", False),
    ("EMBEDDINGS_BATCH_SIZE", "1", True), ("EMBEDDINGS_BATCH_SIZE", "2048", True),
    ("EMBEDDINGS_BATCH_SIZE", "0", False), ("EMBEDDINGS_BATCH_SIZE", "2049", False),
    ("EMBEDDINGS_TIMEOUT", "2.5", True), ("EMBEDDINGS_TIMEOUT", "soon", False),
    ("EMBEDDINGS_MAX_RETRIES", "0", True), ("EMBEDDINGS_MAX_RETRIES", "many", False),
]


@pytest.mark.parametrize("setting, value, valid", VERDICTS, ids=[f"{s}={v}" for s, v, _ in VERDICTS])
def test_the_schema_refuses_what_the_service_refuses(helm, charts, monkeypatch, setting, value, valid):
    from pydantic import ValidationError

    from ai_systemanalitic.app import AnalystSettings

    monkeypatch.setenv(setting, value)
    try:
        AnalystSettings()
        service_takes_it = True
    except ValidationError:
        service_takes_it = False
    assert service_takes_it is valid
    for flag in ("--set", "--set-string"):
        result = subprocess.run(
            [helm, "template", "mw", str(charts / ANALYST), "--kube-version", KUBE_VERSIONS[-1],
             "--values", str(STANDALONE_VALUES[0]), flag, f"config.{setting}={value}"], capture_output=True, text=True)
        assert (result.returncode == 0) is valid, (flag, result.stderr)
        if not valid:
            assert f"/config/{setting}" in result.stderr


# ---- pgvector in the umbrella's bundled PostgreSQL -----------------------------------------------

PGVECTOR_TAG = "0.8.1-pg17-bookworm"


def postgresql_container(objects) -> dict:
    statefulset = next(s for s in by_kind(objects, "StatefulSet") if s["metadata"]["name"] == "mw-postgresql")
    return pod_spec(statefulset)["containers"][0]


def template(helm, charts, *args) -> subprocess.CompletedProcess:
    return subprocess.run([helm, "template", "mw", str(charts / "charts/multyworkemon"), "--kube-version", KUBE_VERSIONS[-1], *args],
                          capture_output=True, text=True)


def test_the_bundled_postgresql_takes_pgvectors_image(render):
    assert postgresql_container(umbrella(render, "defaults"))["image"] == "postgres:17.5-alpine"
    objects = umbrella(render, "embeddings")
    container = postgresql_container(objects)
    assert container["image"] == f"pgvector/pgvector:{PGVECTOR_TAG}"
    config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "mw-ai-systemanalitic")["data"]
    assert config["EMBEDDINGS_MODEL"] == "text-embedding-3-small" and config["EMBEDDINGS_DIMENSIONS"] == "512"
    # The analyst's DATABASE_URL is the bundled one, as the image's POSTGRES_USER: the superuser the
    # entrypoint's initdb makes, allowed to CREATE EXTENSION vector (pgvector is not a trusted extension).
    analyst = next(d for d in by_kind(objects, "Deployment") if d["metadata"]["name"] == "mw-ai-systemanalitic")
    volume = next(v for v in pod_spec(analyst)["volumes"] if v["name"] == "secrets")
    assert {"name": "mw-postgresql", "items": [{"key": "DATABASE_URL", "path": "DATABASE_URL"}]} in [
        s["secret"] for s in volume["projected"]["sources"]]
    user = urlparse(secret_data(objects, "mw-postgresql")["DATABASE_URL"]).username
    assert user == {e["name"]: e.get("value") for e in container["env"]}["POSTGRES_USER"]


def test_the_documented_pgvector_tag_keeps_the_default_major():
    """The tag the values comment, the refusal and the test values name is pgvector's build of the
    default image's PostgreSQL major (a volume keeps its major)."""
    values = (ROOT / "charts/multyworkemon/values.yaml").read_text()
    default_tag = yaml.safe_load(values)["postgresql"]["image"]["tag"]
    assert PGVECTOR_TAG.split("-")[1] == "pg" + re.match(r"\d+", default_tag).group()
    assert f"repository pgvector/pgvector, tag {PGVECTOR_TAG}" in " ".join(values.split())
    assert yaml.safe_load((HERE / "values/embeddings.yaml").read_text())["postgresql"]["image"]["tag"] == PGVECTOR_TAG


@pytest.mark.parametrize("repository", ["postgres", "docker.io/library/postgres"])
def test_embeddings_with_the_official_image_are_refused(helm, charts, repository):
    result = template(helm, charts, "--set", "ai-systemanalitic.config.EMBEDDINGS_MODEL=text-embedding-3-small",
                      "--set", f"postgresql.image.repository={repository}")
    assert result.returncode != 0
    assert "ai-systemanalitic.config.EMBEDDINGS_MODEL needs pgvector in the bundled PostgreSQL" in result.stderr
    assert f"postgresql.image.repository=pgvector/pgvector and postgresql.image.tag={PGVECTOR_TAG}" in result.stderr
    # Another major: pgvector's build of that one.
    other = template(helm, charts, "--set", "ai-systemanalitic.config.EMBEDDINGS_MODEL=m", "--set", "postgresql.image.tag=16")
    assert "postgresql.image.tag=0.8.1-pg16-bookworm" in other.stderr


@pytest.mark.parametrize("args", [
    ("--set", "ai-systemanalitic.enabled=false"),
    ("--set", "postgresql.image.repository=registry.example.com/postgres-pgvector"),
    ("--values", str(UMBRELLA_MATRIX["production"][0])),  # an external database: its pgvector is yours
], ids=["analyst-off", "own-image", "external-database"])
def test_embeddings_render_where_the_bundled_image_is_not_in_question(helm, charts, args):
    result = template(helm, charts, "--set", "ai-systemanalitic.config.EMBEDDINGS_MODEL=m", *args)
    assert result.returncode == 0, result.stderr
