"""ai-communicator: e-mail, Telegram and the web chat in, the secretary's answers and actions out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from multyworkemon_common.contract import OperatorReplyStored
from multyworkemon_common.app import LIVENESS_CHECKS, METRICS, READINESS_CHECKS, create_service_app, finish_app
from multyworkemon_common.http import ServiceClient
from multyworkemon_common.logging import get_logger

from .actions import Actions, Departments
from .channels.mail import SIGNATURE, MailChannel, Mailer
from .channels.web import add_web_chat
from .console import Deliver, add_console
from .handling import ChannelMetrics, MessageHandler
from .mailtext import build_followup
from .jira import Jira
from .lock import HOLDING, STANDBY, PollerLock
from .messages import Failure
from .reconnect import Reconnect, Supervisor
from .secretary import Secretary
from .settings import CommunicatorSettings

SERVICE = "ai-communicator"
POLLERS = web.AppKey("pollers", dict)
log = get_logger("ai_communicator")


def create_app(settings: CommunicatorSettings | None = None) -> web.Application:
    settings = settings or CommunicatorSettings()
    # Everything here is for people's browsers (the page and its API): no service token.
    app = create_service_app(SERVICE, settings, public_paths=("/",))
    metrics = ChannelMetrics(app[METRICS])
    secretary = Secretary(ServiceClient(
        "ai-secretary", settings.secretary_url, metrics=app[METRICS],
        token=settings.service_token.get_secret_value(), timeout=settings.secretary_timeout,
    ))
    bot = tg = None
    if settings.telegram_enabled:
        # aiogram costs seconds and about 100 MB to import: only when a bot is configured.
        from .channels import telegram as tg

        bot = tg.make_bot(settings)
    mailer = Mailer(settings) if settings.smtp_login[0] else None
    jira = None
    if settings.jira_base_url and settings.jira_project_key:
        jira = Jira(
            settings.jira_base_url, settings.jira_project_key, settings.jira_token.get_secret_value(),
            user=settings.jira_user, issue_type=settings.jira_issue_type, timeout=settings.jira_timeout,
        )
    actions = Actions(
        Departments.load(settings.departments_file), jira=jira,
        send_telegram=(lambda chat_id, text: tg.send_text(bot, chat_id, text)) if bot else None,
        send_mail=mailer.send if mailer else None, sender_address=settings.sender_address,
    )
    handler = MessageHandler(secretary, actions, metrics)
    add_web_chat(app, handler, metrics)
    add_console(app, secretary, _operator_delivery(bot, tg, mailer), settings.operator_emails())

    dsn = settings.database_url.get_secret_value()
    # A crashed poller starts again (paced like a failing message), under the lock when there is one.
    pollers: list[tuple[str, PollerLock, Supervisor]] = []
    app[POLLERS] = {}

    def add_poller(name: str, lock: PollerLock, work: Callable[[], Awaitable[None]], channel) -> None:
        supervisor = Supervisor(name, work, Reconnect(settings.retry_base_seconds, settings.retry_max_seconds), settings.max_attempts)
        pollers.append((name, lock, supervisor))
        app[READINESS_CHECKS][name] = _channel_ready(lock, channel)
        app[LIVENESS_CHECKS][name] = _poller_alive(app, name, supervisor)

    if settings.mail_enabled and mailer is not None:
        mail = MailChannel(settings, handler, mailer, metrics)
        lock = PollerLock(dsn, f"mail:{settings.imap_user.lower()}@{settings.imap_host}/{settings.imap_folder}", settings.lock_retry_seconds)
        add_poller("email", lock, mail.run, mail)
    if bot is not None:
        telegram = tg.TelegramChannel(settings, bot, handler, metrics)
        lock = PollerLock(dsn, f"telegram:{bot.id}", settings.lock_retry_seconds)
        add_poller("telegram", lock, telegram.run, telegram)

    async def peer_clients(_app: web.Application):
        yield
        await secretary.close()
        if bot is not None:
            await bot.session.close()
        if jira is not None:
            await jira.close()

    async def channels(app_: web.Application):
        metrics.connected.set({"channel": "direct"}, 1)
        for name, lock, supervisor in pollers:
            app_[POLLERS][name] = asyncio.create_task(lock.run(supervisor.run), name=f"poller-{name}")
        log.info("channels", labels={"email": str(settings.mail_enabled), "telegram": str(bot is not None), "jira": str(jira is not None)})
        yield
        metrics.connected.set({"channel": "direct"}, 0)
        tasks = list(app_[POLLERS].values())
        app_[POLLERS].clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Started in this order, stopped in the reverse: the pollers end before their clients close.
    app.cleanup_ctx.extend([peer_clients, channels])
    return finish_app(app, "ai-communicator API")


def _operator_delivery(bot, tg, mailer: Mailer | None) -> dict[str, Deliver]:
    """How an operator's reply reaches the user on each channel that can send (the web chat's page
    fetches it itself)."""
    delivery: dict[str, Deliver] = {}
    if bot is not None:
        async def to_telegram(stored: OperatorReplyStored, text: str) -> str:
            if not (stored.thread or "").startswith("tg:"):
                raise Failure("the conversation has no Telegram chat", outage=False)
            return await tg.send_text(bot, int(stored.thread.removeprefix("tg:")), text)

        delivery["tg"] = to_telegram
    if mailer is not None:
        async def to_mail(stored: OperatorReplyStored, text: str) -> str:
            if not stored.address:
                raise Failure("the user's e-mail address is unknown", outage=False)
            return await mailer.send(build_followup(mailer.sender, stored.address, stored.thread, stored.in_reply_to, text, SIGNATURE))

        delivery["email"] = to_mail
    return delivery


def _channel_ready(lock: PollerLock, channel) -> Callable[[], Awaitable[tuple[bool, str]]]:
    async def check() -> tuple[bool, str]:
        if lock.state == HOLDING:
            return channel.connected, "connected" if channel.connected else "connecting"
        if lock.state == STANDBY:
            return True, "standby: another replica polls"
        return False, f"poller lock {lock.state}"

    return check


def _poller_alive(app: web.Application, name: str, supervisor: Supervisor) -> Callable[[], Awaitable[tuple[bool, str]]]:
    async def check() -> tuple[bool, str]:
        return supervisor.alive(app[POLLERS].get(name))

    return check


__all__ = ["create_app", "CommunicatorSettings"]
