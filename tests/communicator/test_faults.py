"""Faults: the secretary away while mail and Telegram messages arrive, a poison mail, two replicas, a shutdown."""

from __future__ import annotations

import asyncio
import random

import asyncpg

from ai_communicator.lock import HOLDING, STARTING, PollerLock

from support.client import get
from support.communicator import metric, start_communicator
from test_mail import letter, wait_flag
from test_telegram import ANTON, tg_settings

ELENA = 100002  # a Telegram chat of someone the directory does not know by chat id


async def settle(seconds: float = 1.5) -> None:
    """Give a wrong second answer the time to show up before counting."""
    await asyncio.sleep(seconds)


async def test_secretary_outage_loses_nothing_and_answers_each_message_once(core, mail, telegram):
    secretary = core.services["secretary"]
    communicator = await start_communicator(core.secretary, **mail.settings(), **tg_settings(telegram))
    try:
        await secretary.stop()
        letters = [
            letter("Нужна выгрузка авторизаций кошельков за октябрь по статусам", subject="Выгрузка"),
            letter("Нужен отчёт по платежам за сентябрь по дням", subject="Отчёт", sender="petrovaelena@example.com"),
        ]
        for message in letters:
            await mail.dovecot.deliver(mail.SERVICE, message)
        telegram.user_says("Нужна выгрузка платежей за октябрь по дням", chat_id=ANTON, username="smirnov_anton")
        telegram.user_says("Сколько отклонённых авторизаций по картам было вчера?", chat_id=ELENA, username="petrova_elena")
        await asyncio.sleep(2.0)  # several tries fail meanwhile
        assert mail.smtp.received == [] and telegram.sent == []
        assert all("\\Seen" not in flags for flags in (await mail.dovecot.flags(mail.SERVICE)).values())
        assert telegram.confirmed == [], "nothing acknowledged while the secretary is away"
        assert await metric(communicator.url, "mw_channel_messages_failed_total", channel="email") >= 2
        assert await metric(communicator.url, "mw_channel_messages_failed_total", channel="tg") >= 1

        await secretary.start()  # same port: the secretary is back
        for address in ("smirnovanton@example.com", "petrovaelena@example.com"):
            await mail.smtp.wait_for(address, timeout=30)
        await telegram.wait_sent(ANTON, timeout=30)
        await telegram.wait_sent(ELENA, timeout=30)
        await settle()
        assert len(mail.smtp.to("smirnovanton@example.com")) == 1 and len(mail.smtp.to("petrovaelena@example.com")) == 1
        assert len(telegram.to(ANTON)) == 1 and len(telegram.to(ELENA)) == 1
        for message in letters:
            assert "\\Seen" in await wait_flag(mail, message["Message-ID"], "\\Seen")
        assert await metric(communicator.url, "mw_channel_messages_retried_total", channel="email") >= 2
        assert await metric(communicator.url, "mw_channel_poison_messages_total") == 0, "an outage never makes a message poison"
    finally:
        await communicator.stop()


async def test_poison_mail_is_flagged_and_does_not_block_the_mailbox(core, mail):
    mail.smtp.refused.add("bounces@example.com")  # every reply to this sender is refused (550)
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        poison = letter("Нужна выгрузка авторизаций кошельков за октябрь", subject="Выгрузка", sender="bounces@example.com")
        fine = letter("Нужен отчёт по платежам за сентябрь по дням", subject="Отчёт")
        await mail.dovecot.deliver(mail.SERVICE, poison)
        await mail.dovecot.deliver(mail.SERVICE, fine)
        [reply] = await mail.smtp.wait_for("smirnovanton@example.com")
        assert reply["In-Reply-To"] == fine["Message-ID"], "the mail behind the poison one was answered meanwhile"
        flags = await wait_flag(mail, poison["Message-ID"], "\\Flagged")
        assert "\\Flagged" in flags and "\\Seen" not in flags
        assert await metric(communicator.url, "mw_channel_poison_messages_total", channel="email") == 1
        assert await metric(communicator.url, "mw_channel_messages_failed_total", channel="email") == 3
        tries = await metric(communicator.url, "mw_channel_messages_retried_total", channel="email")
        await settle()
        assert await metric(communicator.url, "mw_channel_messages_retried_total", channel="email") == tries, "set aside: no more tries"
    finally:
        await communicator.stop()


async def _roles(*communicators) -> dict[str, list[str]]:
    """Per channel, the readiness detail of each replica."""
    roles: dict[str, list[str]] = {"email": [], "telegram": []}
    for communicator in communicators:
        _, body, _ = await get(f"{communicator.url}/health/ready")
        for channel in roles:
            roles[channel].append(body["checks"][channel]["detail"])
    return roles


async def _one_poller_each(*communicators) -> dict[str, list[str]]:
    expected = ["connected"] + ["standby: another replica polls"] * (len(communicators) - 1)
    for _ in range(100):
        roles = await _roles(*communicators)
        if all(sorted(details) == expected for details in roles.values()):
            return roles
        await asyncio.sleep(0.1)
    raise AssertionError(f"not exactly one poller per channel: {roles}")


async def test_two_communicators_answer_once_and_one_takes_over(core, mail, telegram):
    settings = {**mail.settings(), **tg_settings(telegram), "database_url": core.database_url}
    first = await start_communicator(core.secretary, **settings)
    second = await start_communicator(core.secretary, **settings)
    replicas = [first, second]
    try:
        await _one_poller_each(*replicas)
        senders = ["smirnovanton@example.com", "petrovaelena@example.com", "ivanovsergey@example.com"]
        for n, sender in enumerate(senders):
            await mail.dovecot.deliver(mail.SERVICE, letter(f"Нужна выгрузка платежей за {n + 1} квартал по дням", subject="Выгрузка", sender=sender))
            telegram.user_says(f"Нужен отчёт по картам за {n + 1} квартал по дням", chat_id=ANTON + n)
        for n, sender in enumerate(senders):
            await mail.smtp.wait_for(sender)
            await telegram.wait_sent(ANTON + n)
        await settle()
        assert [len(mail.smtp.to(s)) for s in senders] == [1, 1, 1]
        assert [len(telegram.to(ANTON + n)) for n in range(3)] == [1, 1, 1]
        assert telegram.conflicts == 0, "never two getUpdates at once"
        # From here on a poll may overlap for a moment while the lock changes hands (Telegram
        # answers one of them 409); the secretary's message_id idempotency keeps the answers single.

        # The mail poller's database session dies (a crashed pod, a cut network): PostgreSQL frees
        # the lock and the replicas sort out who polls now.
        connection = await asyncpg.connect(core.database_url)
        try:
            killed = await connection.fetchval(
                """SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l
                   WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"""
            )
        finally:
            await connection.close()
        assert killed == 2, "one lock per channel"
        await asyncio.sleep(0.5)
        roles = await _one_poller_each(*replicas)

        # And the holder of the mailbox goes away for good: the other one takes over.
        holder = replicas[roles["email"].index("connected")]
        await holder.stop()
        survivor = second if holder is first else first
        assert await _one_poller_each(survivor) == {"email": ["connected"], "telegram": ["connected"]}
        await mail.dovecot.deliver(mail.SERVICE, letter("Нужна выгрузка авторизаций за октябрь по статусам", subject="Ещё", sender=senders[0]))
        telegram.user_says("Нужна выгрузка авторизаций за октябрь по статусам", chat_id=ANTON)
        await mail.smtp.wait_for(senders[0], 2)
        await telegram.wait_sent(ANTON, 2)
        await settle()
        assert len(mail.smtp.to(senders[0])) == 2 and len(telegram.to(ANTON)) == 2
    finally:
        for replica in replicas:
            await replica.stop()


async def test_a_poller_stops_when_cancelled_however_often_it_checks_its_lock(database_url):
    # The lock checks its connection every retry_seconds; a shutdown's cancel arriving just as a
    # check ends was lost (asyncio.wait_for on Python 3.11), and the poller outlived its service.
    lock = PollerLock(database_url, "cancel-race", retry_seconds=0.002)
    outlived = []
    for attempt in range(150):
        poller = asyncio.create_task(lock.run(lambda: asyncio.Event().wait()))
        while lock.state != HOLDING:
            await asyncio.sleep(0.001)
        await asyncio.sleep(random.uniform(0, 0.02))
        poller.cancel()
        done, _ = await asyncio.wait({poller}, timeout=2)
        if not done:
            outlived.append(attempt)
            while not poller.done():
                poller.cancel()
                await asyncio.sleep(0.01)
        lock.state = STARTING
    assert outlived == [], f"cancelled pollers still running in attempts {outlived}"
