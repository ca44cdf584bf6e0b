"""The umbrella chart on a real Kubernetes (scripts/cluster/up.sh), as a user installs it: `helm
install --wait --atomic` with the kind values, `helm test`, the README's conversation through
`kubectl port-forward`, an upgrade under load, pods deleted, uninstall, and nothing left behind.

The tests run in file order on one release; each builds on the previous one's state."""

from __future__ import annotations

import base64
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, Kubernetes, http, readme_conversation, report, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

NAMESPACE = RELEASE = "multyworkemon"
SERVICES = ("ai-secretary", "ai-guesser", "ai-systemanalitic", "ai-communicator")
CLEAR = "Нужна статистика авторизаций кошельков за май: сколько отклонено и с какими кодами ответа"


@pytest.fixture(scope="module")
def chart(tmp_path_factory) -> Path:
    """charts/ copied and its dependencies built, as `helm dependency build` does for a user."""
    scratch = tmp_path_factory.mktemp("charts") / "charts"
    shutil.copytree(ROOT / "charts", scratch, ignore=shutil.ignore_patterns("charts", "Chart.lock"))
    return scratch / "multyworkemon"


def local_values(tmp_path: Path, images: dict[str, str]) -> Path:
    """The images this run built: no registry, so never pulled. (values-kind.yaml loads the
    sample users directory and knowledge base `make run` answers from.)"""
    values = {}
    for name, image in images.items():
        repository, tag = image.rsplit(":", 1)
        values["postgresql" if name == "postgres" else name] = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"}}
    path = tmp_path / "local-images.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def release(kubernetes: Kubernetes, chart: Path, images, tmp_path_factory) -> list[str]:
    values = ["-f", str(chart / "values-kind.yaml"), "-f", str(local_values(tmp_path_factory.mktemp("values"), images))]
    kubernetes.helm("dependency", "build", str(chart), timeout=120)
    started = time.monotonic()
    # --wait: every Deployment and the StatefulSet Ready; --atomic: anything else rolls back.
    kubernetes.helm("install", RELEASE, str(chart), "-n", NAMESPACE, "--create-namespace", *values,
                    "--wait", "--atomic", "--timeout", "8m", timeout=600)
    report(f"helm install --wait --atomic (umbrella chart, values-kind.yaml): deployed in {time.monotonic() - started:.0f} s")
    return values


def pods(kubernetes: Kubernetes, selector: str) -> list[dict]:
    return kubernetes.json("-n", NAMESPACE, "get", "pods", "-l", selector)["items"]


def ready(pod: dict) -> bool:
    conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
    return conditions.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp")


def service_token(kubernetes: Kubernetes) -> str:
    """SERVICE_TOKEN from the Secret the secretary's pods mount, read as an operator would."""
    deployment = kubernetes.json("-n", NAMESPACE, "get", "deployment", "-l", "app.kubernetes.io/name=ai-secretary")["items"][0]
    names = []
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        names += [source["secret"]["name"] for source in volume.get("projected", {}).get("sources", []) if "secret" in source]
        names += [volume["secret"]["secretName"]] if "secret" in volume else []
    for name in names:
        data = kubernetes.json("-n", NAMESPACE, "get", "secret", name).get("data") or {}
        if "SERVICE_TOKEN" in data:
            return base64.b64decode(data["SERVICE_TOKEN"]).decode()
    raise AssertionError(f"no SERVICE_TOKEN in the secretary's Secrets {names}")


def secretary(kubernetes: Kubernetes):
    return kubernetes.port_forward(NAMESPACE, f"svc/{RELEASE}-ai-secretary", 8000)


@pytest.mark.timeout(90 * 60)  # the first test pays for the builds: Kubernetes from source when cold
def test_install_with_wait_makes_every_pod_ready(kubernetes, release):
    status = kubernetes.helm("status", RELEASE, "-n", NAMESPACE, "-o", "json", timeout=60)
    assert '"status":"deployed"' in status.replace(" ", "")
    everything = kubernetes.json("-n", NAMESPACE, "get", "pods")["items"]
    names = sorted(pod["metadata"]["name"] for pod in everything)
    assert len(names) == 5, names  # four services (one replica each on kind) and PostgreSQL
    assert all(ready(pod) for pod in everything), [pod["status"] for pod in everything if not ready(pod)]
    report("pods Ready after --wait: " + ", ".join(names))


def test_helm_test_passes(kubernetes, release):
    out = kubernetes.helm("test", RELEASE, "-n", NAMESPACE, "--timeout", "4m", timeout=300)
    succeeded = out.count("Phase:          Succeeded")
    assert succeeded == len(SERVICES), out
    report(f"helm test: {succeeded} test pods Succeeded")


def test_readme_conversation_through_port_forward(kubernetes, release):
    with secretary(kubernetes) as base:
        token = service_token(kubernetes)
        # The token from the Secret is in force: the operators' API refuses a call without it.
        status, refused = http(f"{base}/conversations", {"username": "smirnovanton", "channel": "direct"})
        assert status == 401, refused
        first, second = readme_conversation(base, token)
    report(f"README request 1 -> {first['action']}: {first['question'][:150]}")
    report(f"README request 2 -> {second['action']}: {second['response'][:150]}...")
    report("  sources: " + ", ".join(source["url"] for source in second["sources"]))


def test_upgrade_rolls_out_without_a_failed_request(kubernetes, release, chart):
    """A changed value rolls the guesser's and the analyst's pods (their config checksum) while
    requests run through the secretary, which calls both: none may fail. (The secretary itself is
    what the port-forward is pinned to, so its own pods stay.)"""
    rolled = "app.kubernetes.io/name in (ai-guesser,ai-systemanalitic)"
    old = {pod["metadata"]["name"] for pod in pods(kubernetes, rolled)}
    statuses: list[object] = []
    stop = threading.Event()
    with secretary(kubernetes) as base:
        token = service_token(kubernetes)

        def load(worker: int) -> None:
            # Bounded: ends when told, or after 1500 requests per worker.
            for n in range(1500):
                if stop.is_set():
                    return
                try:
                    status, body = http(f"{base}/analyze-request", {"channel": "direct", "username": f"rollout-{worker}-{n}",
                                                                    "request": CLEAR}, {"X-Service-Token": token})
                except OSError as error:
                    status, body = repr(error), None
                statuses.append(status if status == 200 else (status, body))

        # Four clients: before ServiceClient resent calls on reset connections, two showed its 502s in
        # 1 of 7 rollouts, six in 3 of 8.
        workers = [threading.Thread(target=load, args=(i,)) for i in range(4)]
        for worker in workers:
            worker.start()
        try:
            wait_until(lambda: len(statuses) >= 10, 60, 0.2, "requests before the upgrade")
            started = time.monotonic()
            kubernetes.helm("upgrade", RELEASE, str(chart), "-n", NAMESPACE, *release,
                            "--set", "ai-guesser.config.LOG_LEVEL=info", "--set", "ai-systemanalitic.config.LOG_LEVEL=info",
                            "--wait", "--atomic", "--timeout", "6m", timeout=420)
            # Until the old pods are gone: their preStop pause and draining are part of the rollout.
            wait_until(lambda: not old & {pod["metadata"]["name"] for pod in pods(kubernetes, rolled)}, 120, 1,
                       "the old pods to end")
            rollout = time.monotonic() - started
            time.sleep(3)
        finally:
            stop.set()
            for worker in workers:
                worker.join(60)
    new = {pod["metadata"]["name"] for pod in pods(kubernetes, rolled)}
    assert len(new) == 2 and not new & old, (old, new)
    failed = [status for status in statuses if status != 200]
    report(f"helm upgrade --wait --atomic (LOG_LEVEL changed): guesser and analyst pods replaced in {rollout:.0f} s; "
           f"{len(statuses)} requests through the port-forward meanwhile, {len(failed)} failed")
    assert len(statuses) > 20 and not failed, failed[:10]
    history = json.loads(kubernetes.helm("history", RELEASE, "-n", NAMESPACE, "-o", "json", timeout=60))
    assert [(entry["revision"], entry["status"]) for entry in history] == [(1, "superseded"), (2, "deployed")]


def test_deleted_pods_come_back(kubernetes, release):
    """PostgreSQL's pod (its volume keeps the data) and the secretary's pod are deleted; both are
    replaced, and the conversation from before is still there."""
    for selector in ("app.kubernetes.io/name=postgresql", "app.kubernetes.io/name=ai-secretary"):
        # By uid: the StatefulSet's new pod has the old one's name.
        old = {pod["metadata"]["uid"] for pod in pods(kubernetes, selector)}
        started = time.monotonic()
        kubernetes.kubectl("-n", NAMESPACE, "delete", "pod", "-l", selector, "--wait=false")

        def replaced_and_ready() -> bool:
            now = pods(kubernetes, selector)
            return bool(now) and all(pod["metadata"]["uid"] not in old and ready(pod) for pod in now)

        wait_until(replaced_and_ready, 240, 1, f"{selector} back")
        # The others were unready while the database was away; all of them recover by themselves.
        kubernetes.kubectl("-n", NAMESPACE, "wait", "--for=condition=Ready", "pod", "--all", "--timeout=180s", timeout=200)
        report(f"deleted pod {selector.split('=')[1]}: replaced and Ready again in {time.monotonic() - started:.0f} s")
    with secretary(kubernetes) as base:
        token = service_token(kubernetes)
        _, page = wait_until(
            lambda: (lambda answer: answer if answer[0] == 200 else None)(
                http(f"{base}/conversations", {"username": "smirnovanton", "channel": "direct"}, {"X-Service-Token": token})),
            60, 1, "the secretary answering")
        assert page["total"] >= 1, "the conversation from before the deletions is kept"
        first, _ = readme_conversation(base, token, username="after-restart")
        assert first["action"] == "уточнить"


def test_uninstall_and_teardown_leave_nothing(kubernetes, release):
    kubernetes.helm("uninstall", RELEASE, "-n", NAMESPACE, "--wait", "--timeout", "3m", timeout=240)
    wait_until(lambda: not kubernetes.json("-n", NAMESPACE, "get", "pods")["items"], 120, 1, "the release's pods to end")
    started = time.monotonic()
    left = kubernetes.down()
    report(f"down.sh: {time.monotonic() - started:.0f} s; processes, mounts, netns, links, firewall chains, cgroups, "
           f"sysctls left: {left or 'none'}")
    assert not left
