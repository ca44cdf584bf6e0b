"""The proof: the services run as processes, a real Prometheus scrapes them while requests flow
(some of them failing for real), then every dashboard query and every alert rule is evaluated by
that Prometheus; one service is stopped and every tile shows it red; and every line the services
printed is held against the Elasticsearch template.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio

from es_template import IndexTemplate
from live_system import Prometheus, ServiceProcess, eventually, start_the_four_services
from observability_files import (
    CLUSTER_METRICS,
    FLUENT_BIT_METRICS,
    LOGGING,
    RUNBOOKS,
    alert_rules,
    load_dashboards,
    metric_names,
    panel_queries,
    panels,
    runbook_blocks,
    selectors,
    stat_display,
    substitute,
)
from support.client import AS_A_SERVICE
from support.communicator import metric
from support.mail import MailPeers
from support.openai_wire import OpenAIWireServer, Reply
from support.telegram_api import TOKEN, TelegramAPI

pytestmark = pytest.mark.asyncio(loop_scope="module")

VAGUE = "Помогите с отчётом"
SPECIFIC = "Срез авторизаций кошельков за месяц"
WAVES = 3
FAILING_PER_WAVE = 4
MAIL_SENDER = "smirnovanton@example.com"  # in the users directory
TG_CHAT, TG_BLOCKED_CHAT = 424242, 434343  # the second one blocked the bot: every reply is refused


class LiveRun:
    def __init__(self, services: dict[str, ServiceProcess], prometheus: Prometheus, llm: OpenAIWireServer,
                 mail: MailPeers, telegram: TelegramAPI):
        self.services = services
        self.prometheus = prometheus
        self.llm = llm
        self.mail = mail
        self.telegram = telegram
        self.traced_request_id = f"obs-{uuid.uuid4()}"
        self.statuses: list[tuple[str, int]] = []

    async def stop_services(self) -> None:
        # In a thread: the Telegram and LLM servers live on this loop and must keep answering.
        for service in reversed(list(self.services.values())):
            await asyncio.to_thread(service.stop)


def _start_services(folder: Path, database_url: str, llm_url: str, mail: MailPeers, telegram: TelegramAPI) -> dict[str, ServiceProcess]:
    mail_settings = {key.upper(): str(value) for key, value in mail.settings().items()}
    return start_the_four_services(
        folder, database_url,
        log_level="debug",  # every record shape, the users' text too (debug only)
        # The analyst talks to an OpenAI-compatible server through its real LLM client, so that its
        # LLM can fail on cue; the guesser keeps the built-in offline model: both providers show up.
        analyst={"LLM_PROVIDER": "openai", "LLM_BASE_URL": llm_url, "LLM_API_KEY": "sk-placeholder",
                 "LLM_MODEL": "wire-model", "LLM_MAX_RETRIES": "0", "LLM_TIMEOUT": "5"},
        # The communicator with all three channels: a Dovecot mailbox and an SMTP server, a local Bot
        # API for the real aiogram, the web chat; quick retries so a failing message ends in seconds.
        communicator={**mail_settings, "TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_URL": telegram.url, "TELEGRAM_POLL_TIMEOUT": "2",
                      "MAX_ATTEMPTS": "3", "RETRY_BASE_SECONDS": "0.2", "RETRY_MAX_SECONDS": "0.8", "LOCK_RETRY_SECONDS": "0.3"},
    )


async def _call(run: LiveRun, session: aiohttp.ClientSession, method: str, service: str, path: str, **kwargs) -> dict:
    # As the communicator would: with the service token the suite's services share.
    kwargs["headers"] = {**AS_A_SERVICE, **kwargs.get("headers", {})}
    async with session.request(method, run.services[service].url + path, **kwargs) as response:
        body = await response.json(content_type=None)
        run.statuses.append((f"{service} {method} {path}", response.status))
        return body


def _letter(wave: int) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Антон Смирнов <{MAIL_SENDER}>"
    message["To"] = MailPeers.SERVICE
    message["Subject"] = f"Выгрузка авторизаций {wave}"
    message["Message-ID"] = make_msgid(domain="example.com")
    message.set_content(f"{SPECIFIC}, выгрузка номер {wave}", charset="utf-8")
    return message


async def _through_the_channels(run: LiveRun, session: aiohttp.ClientSession, wave: int) -> None:
    """A mail, two Telegram messages (one to a chat that blocked the bot) and a web chat message."""
    communicator = run.services["ai-communicator"].url
    await run.mail.dovecot.deliver(MailPeers.SERVICE, _letter(wave))
    run.telegram.user_says(SPECIFIC, chat_id=TG_CHAT, username="smirnov_anton")
    run.telegram.user_says(SPECIFIC, chat_id=TG_BLOCKED_CHAT, username="petrova_elena")
    headers = {"X-Request-ID": run.traced_request_id} if wave == 0 else {}
    answer = await _call(run, session, "POST", "ai-communicator", "/api/chat", json={"message": SPECIFIC}, headers=headers)
    # The visitor rates the answer (the anonymous web chat knows them by the cookie the session keeps).
    await _call(run, session, "PUT", "ai-communicator", "/api/chat/feedback", json={"turn_id": answer["turn_id"], "rating": "up"})
    await run.mail.smtp.wait_for(MAIL_SENDER, count=wave + 1)
    await run.telegram.wait_sent(TG_CHAT, count=wave + 1)
    # Three refused replies, then the message is set aside (and the apology is refused too).
    await eventually("the blocked chat's message set aside",
                      lambda: _poison_count_is(communicator, wave + 1))


async def _poison_count_is(communicator: str, count: int) -> bool:
    return await metric(communicator, "mw_channel_poison_messages_total", channel="tg") >= count


async def _drive_traffic(run: LiveRun) -> None:
    """Waves of requests a scrape apart, so that every counter moves between two samples."""
    analyze = "/analyze-request"
    run.telegram.blocked_chats.add(TG_BLOCKED_CHAT)
    # unsafe: keep the web chat's cookie for an IP address (127.0.0.1) too.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for wave in range(WAVES):
            call = lambda *args, **kwargs: _call(run, session, *args, **kwargs)  # noqa: E731
            # The channels first and to the end, so that nothing else asks the LLM while it is made to fail below.
            await _through_the_channels(run, session, wave)
            first = await call("GET", "ai-secretary", analyze, params={"channel": "direct", "username": "smirnovanton", "request": VAGUE})
            await call("GET", "ai-secretary", analyze, params={"channel": "direct", "username": "smirnovanton", "request": SPECIFIC})
            mail = {"channel": "email", "username": "petrovaelena", "request": SPECIFIC, "message_id": f"<obs-{wave}@example.com>"}
            await call("POST", "ai-secretary", analyze, json=mail)
            await call("POST", "ai-secretary", analyze, json=mail)  # the same message again: answered from storage
            await call("GET", "ai-secretary", analyze, params={"channel": "tg", "username": "ivanovsergey", "request": SPECIFIC})
            # The LLM provider fails for a few requests per wave, enough to cross the alerts' thresholds:
            # the analyst answers 503, the secretary stores each turn and answers 503.
            for attempt in range(FAILING_PER_WAVE):
                run.llm.push(Reply(status=500))
                await call("GET", "ai-secretary", analyze, params={"channel": "tg", "username": f"newcomer{attempt}", "request": SPECIFIC})
            await call("GET", "ai-secretary", analyze, params={"channel": "fax", "username": "u", "request": "r"})  # 400
            await call("GET", "ai-secretary", "/no-such-thing")  # 404, route "unmatched"
            await call("GET", "ai-secretary", "/conversations", params={"username": "smirnovanton"})
            if "conversation_id" in first:
                await call("GET", "ai-secretary", f"/conversations/{first['conversation_id']}")
            await call("GET", "ai-secretary", "/users/smirnovanton")
            await call("GET", "ai-guesser", "/get-context", params={
                "username": "smirnovanton", "department": "Департамент данных", "position": "аналитик", "request": SPECIFIC})
            await call("GET", "ai-guesser", "/get-context", params={"username": "u"})  # 400
            await call("GET", "ai-systemanalitic", "/prepare-analititcs", params={"context": "B2C, кошельки", "request": SPECIFIC})
            run.llm.push(Reply(status=429))  # and once more, rate limited, on a direct call
            await call("GET", "ai-systemanalitic", "/prepare-analititcs", params={"context": "B2C, кошельки", "request": SPECIFIC})
            await asyncio.sleep(1.6)
    # Let the rules see the last wave.
    await asyncio.sleep(2.5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def live(postgres, tmp_path_factory):
    folder = tmp_path_factory.mktemp("observability")
    database_url = await postgres.create_database()
    llm = await OpenAIWireServer().start()
    telegram = await TelegramAPI().start()
    mail = await asyncio.to_thread(MailPeers)
    services: dict[str, ServiceProcess] = {}
    prometheus = None
    try:
        services = _start_services(folder, database_url, llm.base_url, mail, telegram)
        await asyncio.gather(*(service.wait_ready() for service in services.values()))
        prometheus = Prometheus(folder, {name: f"127.0.0.1:{s.port}" for name, s in services.items()})
        prometheus.start()
        await prometheus.wait_scraping()
        run = LiveRun(services, prometheus, llm, mail, telegram)
        await _drive_traffic(run)
        yield run
    finally:
        for service in reversed(list(services.values())):
            await asyncio.to_thread(service.stop)
        if prometheus is not None:
            prometheus.stop()
        mail.stop()
        await telegram.close()
        await llm.close()
        await postgres.drop_database(database_url)


async def test_the_traffic_went_through_and_failed_where_meant_to(live):
    statuses = {}
    for what, status in live.statuses:
        statuses.setdefault(what, set()).add(status)
    assert statuses["ai-secretary GET /analyze-request"] >= {200, 400, 503}
    assert statuses["ai-secretary POST /analyze-request"] == {200}
    assert statuses["ai-secretary GET /no-such-thing"] == {404}
    assert statuses["ai-guesser GET /get-context"] == {200, 400}
    assert statuses["ai-systemanalitic GET /prepare-analititcs"] == {200, 503}
    assert statuses["ai-communicator POST /api/chat"] == {200}
    assert statuses["ai-communicator PUT /api/chat/feedback"] == {200}, "the visitor rated their own answer"
    assert len(live.mail.smtp.to(MAIL_SENDER)) == WAVES and len(live.telegram.to(TG_CHAT)) == WAVES


async def _grafana_values(prometheus: Prometheus) -> dict[str, list[str]]:
    """What Grafana's template variables offer, asked the way Grafana asks (label values of mw_build_info)."""
    services = await prometheus.api("label/service_name/values", **{"match[]": "mw_build_info"})
    return {"service": sorted(services)}


def _needs_data(expr: str) -> bool:
    # kube-state-metrics, cAdvisor and Fluent Bit exist only in a cluster; everything else must show real data here.
    return not metric_names(expr) & (CLUSTER_METRICS | FLUENT_BIT_METRICS)


def _finite(result: list[dict]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


async def test_no_series_carries_what_users_sent(live):
    """Label values stay a bounded set: no user names, message text, message or request ids."""
    series = await live.prometheus.api("series", **{"match[]": '{__name__=~"mw_.+"}'})
    assert len(series) > 100
    private = ["smirnov", "petrova", "ivanov", "newcomer", "example.com", SPECIFIC, VAGUE, "obs-", str(TG_CHAT), str(TG_BLOCKED_CHAT)]
    leaks = [s for s in series for value in s.values() for word in private if word in value]
    assert not leaks, leaks[:5]
    routes = {s["route"] for s in series if "route" in s}
    assert all(route == "unmatched" or route.startswith("/") for route in routes)
    assert not any("smirnovanton" in route or route.rstrip("/").split("/")[-1].isdigit() for route in routes), routes


async def test_template_variables_offer_the_running_services(live):
    values = await _grafana_values(live.prometheus)
    assert values["service"] == sorted(live.services)
    for service in live.services:
        instances = await live.prometheus.api("label/instance/values", **{"match[]": f'mw_build_info{{service_name="{service}"}}'})
        assert instances == [f"127.0.0.1:{live.services[service].port}"]


async def test_every_health_dashboard_query_answers_with_data(live):
    dashboard = load_dashboards()["multyworkemon-health.json"]
    services = "(" + "|".join((await _grafana_values(live.prometheus))["service"]) + ")"  # "All", as Grafana expands it
    empty, checked = [], 0
    for query in panel_queries("health", dashboard):
        result = await live.prometheus.query(substitute(query.expr, {"service": services, "namespace": ".*"}))
        checked += 1
        if _needs_data(query.expr) and not _finite(result):
            empty.append(query.where)
    assert checked >= 40
    assert not empty, "panels that show nothing after real traffic:\n  " + "\n  ".join(empty)


async def test_every_service_dashboard_query_answers_for_some_service(live):
    dashboard = load_dashboards()["multyworkemon-service.json"]
    services = (await _grafana_values(live.prometheus))["service"]
    empty = []
    for query in panel_queries("service", dashboard):
        answered = []
        for service in services:  # valid PromQL for every choice of the variable ...
            result = await live.prometheus.query(substitute(query.expr, {"service": service, "instance": ".*", "namespace": ".*"}))
            answered.append(_finite(result))
        if _needs_data(query.expr) and not any(answered):  # ... and data for at least one
            empty.append(query.where)
    assert not empty, "panels that show nothing for any service:\n  " + "\n  ".join(empty)


async def test_prometheus_loaded_and_evaluates_every_alert_rule(live):
    groups = (await live.prometheus.api("rules"))["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {rule.name for rule in alert_rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok" and not rule.get("lastError"), f"{name}: {rule.get('lastError')}"


async def test_every_series_an_alert_reads_exists(live):
    missing = []
    for rule in alert_rules():
        for selector in selectors(rule.expr):
            if _needs_data(selector) and not await live.prometheus.query(f"count({selector})"):
                missing.append(f"{rule.name}: {selector}")
    assert not missing, "alerts that watch series no service exports:\n  " + "\n  ".join(missing)


async def test_the_alerts_the_failures_deserve_are_pending(live):
    alerts = (await live.prometheus.api("alerts"))["alerts"]
    active = {(a["labels"]["alertname"], a["labels"].get("service_name"), a["labels"].get("upstream")) for a in alerts}
    # The analyst's LLM failed once per wave: every layer above it noticed (pending: their `for` has not passed).
    assert ("MWLLMFailing", "ai-systemanalitic", None) in active
    assert ("MWUpstreamFailing", "ai-secretary", "ai-systemanalitic") in active
    assert ("MWHighErrorRatio", "ai-secretary", None) in active
    # The chat that blocked the bot: its messages were retried, then set aside.
    channel_alerts = {(a["labels"]["alertname"], a["labels"].get("channel"), a["state"]) for a in alerts}
    assert ("MWPoisonMessage", "tg", "firing") in channel_alerts
    assert ("MWMessagesStuckInRetries", "tg", "pending") in channel_alerts
    names = {name for name, _, _ in active}
    for healthy in ("MWServiceDown", "MWInstanceDown", "MWServiceMissing", "MWServiceNotReady", "MWDatabaseDown",
                    "MWServiceRestarting", "MWLLMSlow", "MWChannelDisconnected", "MWChannelNotFlowing"):
        assert healthy not in names, f"{healthy} is active on a healthy system: {alerts}"


async def test_every_runbook_query_is_promql_prometheus_accepts(live):
    queries = runbook_blocks(RUNBOOKS.read_text(encoding="utf-8"), "promql")
    assert len(queries) >= 2 * len(alert_rules())
    for query in queries:
        await live.prometheus.query(query)  # raises with Prometheus' message when invalid


async def test_requests_in_flight_read_zero_between_requests(live):
    """Each scrape is itself in flight while it reads the gauge: the raw series says 1 on an idle
    service, the panel takes the scrape off and says 0."""
    (panel,) = [p for p in panels(load_dashboards()["multyworkemon-service.json"]) if p["title"] == "Requests in flight"]
    for service in live.services:
        raw = await live.prometheus.query(f'mw_http_requests_in_flight{{service_name="{service}"}}')
        shown = await live.prometheus.query(substitute(panel["targets"][0]["expr"], {"service": service, "instance": ".*", "namespace": ".*"}))
        assert [float(s["value"][1]) for s in raw] == [1.0], f"{service}: {raw}"
        assert [float(s["value"][1]) for s in shown] == [0.0], f"{service}: {shown}"


def _stat_panels() -> list[tuple[str, dict]]:
    return [(name, panel) for name, dashboard in load_dashboards().items() for panel in panels(dashboard) if panel["type"] == "stat"]


async def _tiles(live, panel: dict, values: dict[str, str]) -> list[tuple[dict, str, str]]:
    """What a stat panel shows: (series labels, text, color) per series, or one NO DATA tile."""
    result = await live.prometheus.query(substitute(panel["targets"][0]["expr"], values))
    if not result:
        return [({}, *stat_display(panel, None))]
    return [(series["metric"], *stat_display(panel, float(series["value"][1]))) for series in result]


def _views(live, dashboard: str, service: str) -> list[dict[str, str]]:
    """The variable values a person would pick: every service ("All"), or the one service alone."""
    everyone = "(" + "|".join(sorted(live.services)) + ")"
    if dashboard == "multyworkemon-service.json":  # one service at a time, every instance
        return [{"service": service, "instance": ".*", "namespace": ".*"}]
    return [{"service": everyone, "namespace": ".*"}, {"service": service, "namespace": ".*"}]


def _owner(labels: dict, stopped: str) -> str:
    """Whose a tile's series is: the service it names, else the stopped one (an empty tile, or the
    channel and action tiles, which are the communicator's alone)."""
    return labels.get("service_name", labels.get("job", stopped))


async def test_a_stopped_service_turns_its_tiles_red_instead_of_blank(live):
    """The communicator stops (every instance, as in an outage). Each stat of both dashboards that
    showed it while it ran now shows it as a red SERVICE DOWN / DOWN, or reads a red NO DATA when
    the whole tile was about it; the running services keep their own state."""
    stopped = "ai-communicator"
    views = [(name, panel, values) for name, panel in _stat_panels() for values in _views(live, name, stopped)]
    before = [await _tiles(live, panel, values) for _, panel, values in views]
    fed = [any(labels and _owner(labels, stopped) == stopped for labels, _, _ in tiles) for tiles in before]
    for (name, panel, values), tiles, feeds in zip(views, before, fed):
        texts = {text for _, text, _ in tiles}
        # A healthy system shows no DOWN tile; NO DATA only where the selected service has no such series (no database).
        assert not texts & {"SERVICE DOWN", "DOWN"} and (feeds or values["service"] != stopped or texts <= {"NO DATA"}), (panel["title"], tiles)
        if values["service"] != stopped:
            assert "NO DATA" not in texts, (panel["title"], tiles)

    await asyncio.to_thread(live.services[stopped].stop)
    await eventually("Prometheus sees the communicator down", lambda: _is_down(live.prometheus, stopped), timeout=15)
    for (name, panel, values), feeds in zip(views, fed):
        tiles = await _tiles(live, panel, values)
        its = [(text, color) for labels, text, color in tiles if _owner(labels, stopped) == stopped]
        others = [text for labels, text, _ in tiles if _owner(labels, stopped) != stopped]
        if feeds:
            assert its and all(color == "red" and text in {"SERVICE DOWN", "DOWN", "NO DATA"} for text, color in its), (panel["title"], values, tiles)
        assert not {"SERVICE DOWN", "DOWN", "NO DATA"} & set(others), (panel["title"], values, tiles)
    # Up, Ready, Restarts, Channel connected, Poison messages, Actions failed, and the drill-down's Ready and Uptime.
    assert sum(fed) >= 10, [(panel["title"], values["service"]) for (_, panel, values), feeds in zip(views, fed) if feeds]


async def _is_down(prometheus: Prometheus, job: str) -> bool:
    return [float(s["value"][1]) for s in await prometheus.query(f'up{{job="{job}"}}')] == [0.0]


async def test_every_log_line_fits_the_index_template(live):
    """Last in this module: it stops the services so that their shutdown lines are checked too."""
    await live.stop_services()
    template = IndexTemplate.load(LOGGING / "elasticsearch-index-template.json")
    problems, lines_per_service, traced = [], {}, set()
    for name, service in live.services.items():
        assert service.stderr_path.read_text(encoding="utf-8") == "", f"{name} wrote to stderr (not JSON records)"
        lines = service.stdout_path.read_text(encoding="utf-8").splitlines()
        lines_per_service[name] = len(lines)
        for number, line in enumerate(lines, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                problems.append(f"{name}:{number}: not JSON: {line[:120]}")
                continue
            problems.extend(f"{name}:{number}: {p}" for p in template.problems(record))
            for key in ("@timestamp", "message"):
                if key not in record:
                    problems.append(f"{name}:{number}: no {key}")
            if record.get("service", {}).get("name") != name:
                problems.append(f"{name}:{number}: service.name is {record.get('service', {}).get('name')!r}")
            if not record.get("log", {}).get("level"):
                problems.append(f"{name}:{number}: no log.level")
            if record.get("trace", {}).get("id") == live.traced_request_id:
                traced.add(name)
    assert not problems, f"{len(problems)} problems:\n  " + "\n  ".join(problems[:40])
    assert all(count >= 10 for count in lines_per_service.values()), lines_per_service
    # One request id, in a log line of every service it went through: what Kibana's saved search follows.
    assert traced == {"ai-communicator", "ai-secretary", "ai-guesser", "ai-systemanalitic"}

