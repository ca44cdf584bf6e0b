"""One page per incident, proven end to end: the four services as processes on a PostgreSQL of their
own, a real Prometheus evaluating the shipped rules (their `for` taken out, so that minutes become
seconds) and sending to a real Alertmanager (Debian's) configured with the inhibit rules of the
monitoring values file, read from that file. PostgreSQL is stopped: one MWDatabaseDown pages and
the alerts it causes are inhibited, as Alertmanager's own API says; it comes back and everything
resolves; then a one-instance service stops and pages once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import pytest_asyncio

from live_system import Alertmanager, Prometheus, eventually, rules_firing_at_once, start_the_four_services
from observability_files import alertmanager_config
from support.postgres import StoppablePostgres
from support.telegram_api import TOKEN, TelegramAPI

pytestmark = pytest.mark.asyncio(loop_scope="module")

# The services that keep data in PostgreSQL (they export mw_db_up); the communicator only holds its
# poller locks there, which its readiness and mw_channel_connected show.
WITH_DATABASE = {"ai-secretary", "ai-systemanalitic"}


@dataclass
class System:
    database: StoppablePostgres
    services: dict
    prometheus: Prometheus
    alertmanager: Alertmanager


def _config() -> dict:
    """A route with one silent receiver (the test reads the API, nothing is sent anywhere) and the
    inhibit rules exactly as k8s/values/kube-prometheus-stack.yaml ships them."""
    return {
        "route": {"receiver": "none", "group_by": ["namespace"], "group_wait": "1s"},
        "receivers": [{"name": "none"}],
        "inhibit_rules": alertmanager_config()["inhibit_rules"],
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def system(tmp_path_factory):
    folder = tmp_path_factory.mktemp("alerting")
    database = StoppablePostgres()
    telegram = await TelegramAPI().start()
    services, prometheus, alertmanager = {}, None, None
    try:
        url = await database.create_database("alerting")
        # The communicator with Telegram: its poller lock lives in PostgreSQL, so the outage disconnects it.
        services = start_the_four_services(folder, url, communicator={
            "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url, "TELEGRAM_POLL_TIMEOUT": "2", "LOCK_RETRY_SECONDS": "0.3",
        })
        await asyncio.gather(*(service.wait_ready() for service in services.values()))
        alertmanager = Alertmanager(folder, _config())
        alertmanager.start()
        await alertmanager.wait_ready()
        prometheus = Prometheus(folder, {name: f"127.0.0.1:{s.port}" for name, s in services.items()},
                                rules=rules_firing_at_once(folder), alertmanager=alertmanager.address)
        prometheus.start()
        await prometheus.wait_scraping()
        yield System(database, services, prometheus, alertmanager)
    finally:
        for service in reversed(list(services.values())):
            await asyncio.to_thread(service.stop)
        for process in (prometheus, alertmanager):
            if process is not None:
                process.stop()
        await telegram.close()
        await asyncio.to_thread(database.cleanup)


def _names(alerts: list[dict]) -> list[str]:
    return sorted(alert["labels"]["alertname"] for alert in alerts)


async def test_a_healthy_system_raises_nothing(system):
    await asyncio.sleep(3)  # a few evaluations
    assert (await system.prometheus.api("alerts"))["alerts"] == []
    assert await system.alertmanager.alerts() == []


async def test_a_database_outage_pages_once_and_inhibits_what_it_causes(system):
    await system.database.stop()
    am = system.alertmanager

    async def settled():
        everything = await am.alerts()
        names = _names(everything)
        inhibited = [a for a in everything if a["status"]["inhibitedBy"]]
        not_ready = {a["labels"].get("service_name") for a in inhibited if a["labels"]["alertname"] == "MWServiceNotReady"}
        disconnected = {a["labels"].get("channel") for a in inhibited if a["labels"]["alertname"] == "MWChannelDisconnected"}
        counted = [float(rule["value"]) for rule in await system.prometheus.alerts("MWDatabaseDown")]
        if counted == [len(WITH_DATABASE)] and "MWDatabaseDown" in names and {"ai-secretary", "ai-communicator"} <= not_ready and "tg" in disconnected:
            return everything
        return None

    everything = await eventually("MWDatabaseDown firing with the not-ready and channel alerts inhibited", settled, timeout=45)

    # One page: a single MWDatabaseDown for the release (its value, checked above, counts the services).
    (page,) = [a for a in everything if a["labels"]["alertname"] == "MWDatabaseDown"]
    assert page["status"] == {"state": "active", "inhibitedBy": [], "silencedBy": []}
    assert set(page["labels"]) == {"alertname", "severity"}, "one per outage, not one per service or instance"

    # What Alertmanager would notify about: only the cause.
    assert _names(await am.alerts(inhibited=False)) == ["MWDatabaseDown"]
    # What it holds back, each naming MWDatabaseDown as the reason (Alertmanager's own fields).
    inhibited = await am.alerts(active=False, silenced=False, inhibited=True)
    assert inhibited and all(a["status"]["state"] == "suppressed" and a["status"]["inhibitedBy"] == [page["fingerprint"]]
                             for a in inhibited), inhibited
    held = {(a["labels"]["alertname"], a["labels"].get("service_name") or a["labels"].get("channel")) for a in inhibited}
    assert {("MWServiceNotReady", "ai-secretary"), ("MWServiceNotReady", "ai-communicator"), ("MWChannelDisconnected", "tg")} <= held
    # Not-ready is one alert per service, whatever its instances; the guesser has no database and stays ready.
    not_ready = [a["labels"]["service_name"] for a in inhibited if a["labels"]["alertname"] == "MWServiceNotReady"]
    assert sorted(not_ready) == sorted(WITH_DATABASE | {"ai-communicator"})


async def test_the_database_back_resolves_every_alert(system):
    await system.database.start()
    await eventually("every alert resolved", lambda: _nothing_left(system), timeout=60)


async def _nothing_left(system: System) -> bool:
    return not (await system.prometheus.api("alerts"))["alerts"] and not await system.alertmanager.alerts()


async def test_a_service_with_one_instance_down_pages_once(system):
    await asyncio.to_thread(system.services["ai-guesser"].stop)
    am = system.alertmanager

    async def paged():
        return [a for a in await am.alerts() if a["labels"]["alertname"] == "MWServiceDown"]

    (page,) = await eventually("MWServiceDown for the guesser", paged)
    assert page["labels"]["job"] == "ai-guesser"
    # With every `for` taken out, MWInstanceDown would have fired at the same evaluation had its
    # expression matched: it never did, not even pending.
    assert await system.prometheus.query('ALERTS{alertname="MWInstanceDown"}[5m]') == []
    assert _names(await am.alerts()) == ["MWServiceDown"]
