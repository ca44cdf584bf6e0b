"""E-mail against real peers: Dovecot (IMAPS) holds the mailbox, aiosmtpd (SMTPS) takes the replies."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.utils import make_msgid

from support.client import get
from support.communicator import metric, start_communicator

SENDER = "smirnovanton@example.com"  # in the users directory: Департамент клиентского сервиса


def letter(text: str, *, subject: str, sender: str = SENDER, charset: str = "utf-8", **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Антон Смирнов <{sender}>"
    message["To"] = "helpdesk@mw.test"
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="example.com")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(text, charset=charset)
    return message


async def wait_flag(mail, message_id: str, flag: str, timeout: float = 10.0) -> set[str]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        flags = (await mail.dovecot.flags(mail.SERVICE)).get(message_id, set())
        if flag in flags or asyncio.get_running_loop().time() > deadline:
            return flags
        await asyncio.sleep(0.1)


async def test_windows_1251_mail_gets_a_threaded_reply_and_is_then_seen(core, mail):
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        original = letter(
            "Добрый день! Нужна выгрузка авторизаций кошельков за октябрь по статусам.\n\n-- \nАнтон Смирнов\nмладший аналитик",
            subject="Выгрузка авторизаций", charset="windows-1251",
        )
        assert original.get_content_charset() == "windows-1251"
        await mail.dovecot.deliver(mail.SERVICE, original)

        [reply] = await mail.smtp.wait_for(SENDER)
        assert reply["Subject"] == "Re: Выгрузка авторизаций"
        assert reply["In-Reply-To"] == original["Message-ID"]
        assert original["Message-ID"] in reply["References"]
        assert reply["From"] == mail.SERVICE and reply["Auto-Submitted"] == "auto-replied"
        body = reply.get_content()
        assert "авториз" in body.lower() and "> Добрый день!" in body, body

        assert "\\Seen" in await wait_flag(mail, original["Message-ID"], "\\Seen")
        # The turn records the reply that was sent, with its Message-ID.
        status, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "email"})
        assert status == 200 and page["total"] == 1
        _, thread, _ = await get(f"{core.secretary}/conversations/{page['items'][0]['id']}")
        [turn] = thread["turns"]
        assert turn["message_id"] == original["Message-ID"]
        assert "Антон Смирнов" not in turn["request"], "the signature is not part of the request"
        assert [(r["action"], r["status"], r["external_id"]) for r in turn["action_results"]] == [
            ("ответить на письмо", "done", reply["Message-ID"])
        ]
        assert await metric(communicator.url, "mw_channel_messages_received_total", channel="email") == 1
        assert await metric(communicator.url, "mw_channel_messages_processed_total", channel="email") == 1
        assert await metric(communicator.url, "mw_channel_connected", channel="email") == 1
        assert await metric(communicator.url, "mw_actions_total", action="ответить на письмо", outcome="done") == 1
        _, ready, _ = await get(f"{communicator.url}/health/ready")
        assert ready["checks"]["email"] == {"ok": True, "detail": "connected"}
    finally:
        await communicator.stop()


async def test_clarification_round_trip_by_mail(core, mail):
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        first = letter("Я хочу получать аналитику о операциях наших кошельков", subject="Аналитика")
        await mail.dovecot.deliver(mail.SERVICE, first)
        [question] = await mail.smtp.wait_for(SENDER)
        assert "кошел" in question.get_content().lower() and "?" in question.get_content()

        # The user answers with a normal reply: Re:, threading headers, quoted history, a signature.
        quoted = "\n".join(f"> {line}" for line in question.get_content().splitlines())
        answer = letter(
            f"Меня интересуют операции авторизации за последний месяц\n\nСпасибо!\nС уважением,\nАнтон\n\n"
            f"22.11.2026, 10:15, \"MultyWorkemon\" <{mail.SERVICE}>:\n{quoted}",
            subject=question["Subject"], In_Reply_To=question["Message-ID"], References=f"{first['Message-ID']} {question['Message-ID']}",
        )
        await mail.dovecot.deliver(mail.SERVICE, answer)
        replies = await mail.smtp.wait_for(SENDER, 2)
        final = replies[1]
        assert final["Subject"] == "Re: Аналитика", "no Re: Re: pile-up"
        assert final["In-Reply-To"] == answer["Message-ID"]
        assert "авториз" in final.get_content().lower()

        _, page, _ = await get(f"{core.secretary}/conversations", {"username": "smirnovanton", "channel": "email"})
        assert page["total"] == 1, "the answer continued the conversation"
        _, thread, _ = await get(f"{core.secretary}/conversations/{page['items'][0]['id']}")
        assert [t["action"] for t in thread["turns"]] == ["уточнить", "ответить на письмо"]
        assert thread["turns"][1]["request"] == "Меня интересуют операции авторизации за последний месяц\n\nСпасибо!"
    finally:
        await communicator.stop()


async def test_a_server_without_idle_is_polled(core):
    from support.mail import MailPeers

    peers = MailPeers(capability="IMAP4rev1 LITERAL+ UIDPLUS MOVE")  # announces no IDLE
    communicator = await start_communicator(core.secretary, **peers.settings(), imap_poll_seconds=0.5)
    try:
        original = letter("Нужна выгрузка платежей за октябрь по дням", subject="Выгрузка")
        await peers.dovecot.deliver(peers.SERVICE, original)
        [reply] = await peers.smtp.wait_for(SENDER)
        assert reply["In-Reply-To"] == original["Message-ID"]
        assert "\\Seen" in await wait_flag(peers, original["Message-ID"], "\\Seen")
    finally:
        await communicator.stop()
        peers.stop()


async def test_mail_server_restart_is_survived(core, mail):
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        mail.dovecot.stop()
        for _ in range(100):
            status, ready, _ = await get(f"{communicator.url}/health/ready")
            if status == 503:
                break
            await asyncio.sleep(0.1)
        assert status == 503 and ready["checks"]["email"]["ok"] is False, "not ready while the mailbox is away"
        assert await metric(communicator.url, "mw_channel_connected", channel="email") == 0

        mail.dovecot.start()  # same port, same mail folders
        original = letter("Нужна выгрузка платежей за октябрь по дням", subject="После перезапуска")
        await mail.dovecot.deliver(mail.SERVICE, original)
        [reply] = await mail.smtp.wait_for(SENDER, timeout=30)
        assert reply["In-Reply-To"] == original["Message-ID"]
        status, _, _ = await get(f"{communicator.url}/health/ready")
        assert status == 200
    finally:
        await communicator.stop()
