"""Mail nobody should be able to use against the helpdesk (issue 10.2, 10.4, 10.8, 10.9) and mail
threads (issue 12.5), against the real peers: Dovecot holds the mailbox, aiosmtpd takes the replies."""

from __future__ import annotations

import asyncio
from email.utils import make_msgid

import pytest

from ai_communicator.channels.mail import MailChannel
from ai_communicator.handling import Inbound, MessageHandler
from support.client import get
from support.communicator import metric, start_communicator
from test_mail import SENDER, wait_flag

REQUEST = "Нужна выгрузка авторизаций кошельков за октябрь по статусам"


def raw_letter(*headers: str, sender: str = SENDER, body: str = REQUEST, message_id: str | None = None) -> tuple[bytes, str]:
    """A mail written byte by byte (the stdlib would refuse or re-encode the hostile headers); and its Message-ID."""
    message_id = message_id or make_msgid(domain="example.com")
    lines = [*headers, f"From: Антон Смирнов <{sender}>", "To: helpdesk@mw.test", "Subject: Выгрузка", f"Message-ID: {message_id}",
             "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode(), message_id


@pytest.fixture
def handed_on(monkeypatch) -> list[Inbound]:
    """Every message the channel hands to the handler, as it was handed."""
    seen: list[Inbound] = []
    attempt = MessageHandler.attempt

    async def recording(self, message):
        seen.append(message)
        return await attempt(self, message)

    monkeypatch.setattr(MessageHandler, "attempt", recording)
    return seen


async def settle(seconds: float = 1.5) -> None:
    await asyncio.sleep(seconds)


async def test_encoded_line_breaks_in_headers_neither_kill_nor_wedge_the_poller(core, mail):
    """Issue 10.2: build_reply raised on such a mail, the apology raised again, and the poller died."""
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        hostile = {
            "u1@example.com": ("Message-ID: =?utf-8?q?<a=0D=0ABcc:_evil@x.com>?=",),
            "u2@example.com": ("Message-ID: <a=?utf-8?q?=0D=0ABcc:_evil@x.com?=b@x>",),
            "u3@example.com": ("References: =?utf-8?q?<a=0D=0ABcc:_evil@x.com>?=",),
            "u4@example.com": ("Reply-To: =?utf-8?q?a=0D=0ABcc:_evil@x.com?= <evil@x.com>",),
        }
        for sender, headers in hostile.items():
            raw, _ = raw_letter(*(h for h in headers if not h.startswith("Message-ID")), sender=sender)
            if headers[0].startswith("Message-ID"):  # replace the letter's own id by the hostile one
                raw = raw.replace(raw[raw.index(b"Message-ID: "):raw.index(b"\r\n", raw.index(b"Message-ID: "))], headers[0].encode())
            await mail.dovecot.deliver(mail.SERVICE, raw)
        fine, fine_id = raw_letter(body="Нужен отчёт по платежам за сентябрь по дням")
        await mail.dovecot.deliver(mail.SERVICE, fine)

        [reply] = await mail.smtp.wait_for(SENDER, timeout=30)
        assert reply["In-Reply-To"] == fine_id, "the mail behind the hostile ones was answered"
        for sender in hostile:
            [answer] = await mail.smtp.wait_for(sender)
            assert answer["Bcc"] is None and "\n" not in str(answer["In-Reply-To"] or "") + str(answer["References"] or "")
        await settle()
        assert not mail.smtp.to("evil@x.com"), "nobody reached through an injected header or Reply-To"
        assert all(len(mail.smtp.to(sender)) == 1 for sender in hostile)
        assert all("\\Seen" in flags for flags in (await mail.dovecot.flags(mail.SERVICE)).values())
        for path in ("/health/ready", "/health/live"):
            status, body, _ = await get(f"{communicator.url}{path}")
            assert status == 200, (path, body)
    finally:
        await communicator.stop()


async def test_a_crashed_poller_restarts_and_liveness_fails_when_it_cannot(core, mail, monkeypatch):
    """Issue 10.2: a dead channel task starts again; one that keeps dying fails /health/live."""
    crashes = {"left": 1}
    process_unseen = MailChannel._process_unseen

    async def buggy(self, client):
        if crashes["left"]:
            crashes["left"] -= 1
            raise RuntimeError("a bug in the poller")
        return await process_unseen(self, client)

    monkeypatch.setattr(MailChannel, "_process_unseen", buggy)
    communicator = await start_communicator(core.secretary, **mail.settings(), ready=False)
    try:
        raw, message_id = raw_letter()
        await mail.dovecot.deliver(mail.SERVICE, raw)
        [reply] = await mail.smtp.wait_for(SENDER, timeout=30)
        assert reply["In-Reply-To"] == message_id and crashes["left"] == 0
        status, body, _ = await get(f"{communicator.url}/health/live")
        assert status == 200 and body["checks"]["email"]["ok"] is True

        crashes["left"] = 10**6  # from now on it dies at every start, beginning with the next mail
        await mail.dovecot.deliver(mail.SERVICE, raw_letter()[0])
        for _ in range(100):
            status, body, _ = await get(f"{communicator.url}/health/live")
            if status == 503:
                break
            await asyncio.sleep(0.1)
        assert status == 503 and body["checks"]["email"]["ok"] is False, body
    finally:
        await communicator.stop()


async def test_replies_go_to_the_from_address_and_only_authenticated_mail_is_verified(core, mail, handed_on):
    """Issue 10.4: Reply-To drew the answer to any address, and any From was believed."""
    communicator = await start_communicator(
        core.secretary, **mail.settings(), mail_authserv_id="mx.mw.test", mail_trusted_relays="10.1.0.0/16",
    )
    ours_pass = "Authentication-Results: mx.mw.test; dkim=pass header.d=example.com"
    ours_fail = "Authentication-Results: mx.mw.test; dkim=fail header.d=example.com; dmarc=fail header.from=example.com"
    outside = "Received: from mail.attacker.example (mail.attacker.example [203.0.113.9]) by mx.mw.test with ESMTPS id 1"
    relay = "Received: from relay.mw.test (relay.mw.test [10.1.2.3]) by mailstore.mw.test with LMTP id 2"
    cases = {
        "forged, answers drawn elsewhere": ((outside, "Reply-To: outsider@attacker.example"), False),
        "our server's pass": ((ours_pass, outside), True),
        "the sender's own pass below our fail": ((ours_fail, outside, ours_pass), False),
        "an internal relay": ((relay,), True),
        "the relay named lower down": ((outside, relay), False),
    }
    try:
        ids = {}
        for name, (headers, _) in cases.items():
            raw, ids[name] = raw_letter(*headers, body=f"{REQUEST} ({name})")
            await mail.dovecot.deliver(mail.SERVICE, raw)
        replies = await mail.smtp.wait_for(SENDER, len(cases), timeout=60)
        await settle()
        assert not mail.smtp.to("outsider@attacker.example")
        assert len(mail.smtp.to(SENDER)) == len(cases) and all(r["To"].addresses[0].addr_spec == SENDER for r in replies)
        verified = {message.message_id: message.verified for message in handed_on}
        assert {name: verified[ids[name]] for name in cases} == {name: expected for name, (_, expected) in cases.items()}
    finally:
        await communicator.stop()


async def test_mail_robots_lists_and_reports_are_not_answered_and_replies_are_capped(core, mail, handed_on):
    """Issue 10.8: list mail, suppression headers, bounces and an auto-responder (17 replies in 15 s) were answered."""
    communicator = await start_communicator(core.secretary, **mail.settings(), mail_replies_per_hour=2)
    try:
        robots = {
            "list@example.com": ("List-Id: <staff.example.com>",),
            "news@example.com": ("List-Unsubscribe: <mailto:leave@example.com>",),
            "outlook@example.com": ("X-Auto-Response-Suppress: All",),
            "away@example.com": ("Auto-Submitted: auto-replied",),
            "bulk@example.com": ("Precedence: bulk",),
            "null@example.com": ("Return-Path: <>",),
        }
        for sender, headers in robots.items():
            raw, _ = raw_letter(*headers, sender=sender)
            await mail.dovecot.deliver(mail.SERVICE, raw)
        report, _ = raw_letter(sender="reports@example.com")
        report = report.replace(b"Content-Type: text/plain; charset=utf-8", b"Content-Type: multipart/report; report-type=delivery-status; boundary=b")
        await mail.dovecot.deliver(mail.SERVICE, report)
        # An auto-responder that says nothing about being one: the hourly cap stops the ping-pong.
        for n in range(4):
            raw, _ = raw_letter(sender="autoresponder@example.com", body=f"Я в отпуске до {n + 10} декабря, {REQUEST}")
            await mail.dovecot.deliver(mail.SERVICE, raw)

        await mail.smtp.wait_for("autoresponder@example.com", 2, timeout=60)
        for _ in range(100):
            flags = await mail.dovecot.flags(mail.SERVICE)
            if all("\\Seen" in f for f in flags.values()):
                break
            await asyncio.sleep(0.1)
        assert len(flags) == 11 and all("\\Seen" in f for f in flags.values()), flags
        await settle()
        assert [r.recipients for r in mail.smtp.received] == [["autoresponder@example.com"]] * 2
        assert {m.username for m in handed_on} == {"autoresponder@example.com"}
    finally:
        await communicator.stop()


async def test_a_large_mail_is_set_aside_unread_and_a_huge_from_does_not_stall(core, mail, handed_on):
    """Issue 10.9: a 21 MB mail added 260 MB RSS; a From with 50k addresses took 20.8 s."""
    communicator = await start_communicator(core.secretary, **mail.settings(), mail_max_bytes=1_000_000)
    try:
        large, large_id = raw_letter(body=REQUEST + "\r\n" + ("x" * 998 + "\r\n") * 3_000)  # 3 MB
        await mail.dovecot.deliver(mail.SERVICE, large)
        many = ", ".join(f"User {n} <user{n}@example.com>" for n in range(50_000))
        crowd, crowd_id = raw_letter(sender="a@example.com")
        await mail.dovecot.deliver(mail.SERVICE, crowd.replace("From: Антон Смирнов <a@example.com>".encode(), f"From: {many}".encode()))
        fine, fine_id = raw_letter(sender="petrovaelena@example.com")
        started = asyncio.get_running_loop().time()
        await mail.dovecot.deliver(mail.SERVICE, fine)

        [reply] = await mail.smtp.wait_for("petrovaelena@example.com", timeout=30)
        assert reply["In-Reply-To"] == fine_id and asyncio.get_running_loop().time() - started < 15
        [note] = await mail.smtp.wait_for(SENDER)
        assert note["In-Reply-To"] == large_id and "слишком большое" in note.get_content()
        flags = await wait_flag(mail, large_id, "\\Flagged")
        assert "\\Flagged" in flags and "\\Seen" not in flags
        assert "\\Seen" in (await mail.dovecot.flags(mail.SERVICE))[crowd_id], "no single sender: seen, not answered"
        assert [m.message_id for m in handed_on] == [fine_id]
        assert await metric(communicator.url, "mw_channel_poison_messages_total", channel="email") == 1
    finally:
        await communicator.stop()
    # Dovecot counts what each session was sent: the large body never left the server.
    assert max(mail.dovecot.bytes_sent()) < 300_000, mail.dovecot.bytes_sent()


async def test_a_reply_continues_its_thread_and_a_new_mail_starts_one(core, mail, handed_on):
    """Issue 12.5: the thread is the root Message-ID (first of References, else In-Reply-To, else its own)."""
    communicator = await start_communicator(core.secretary, **mail.settings())
    try:
        first, first_id = raw_letter()
        await mail.dovecot.deliver(mail.SERVICE, first)
        [question] = await mail.smtp.wait_for(SENDER)
        answer, _ = raw_letter(f"In-Reply-To: {question['Message-ID']}", f"References: {first_id} {question['Message-ID']}")
        await mail.dovecot.deliver(mail.SERVICE, answer)
        await mail.smtp.wait_for(SENDER, 2)
        bare, _ = raw_letter()
        await mail.dovecot.deliver(mail.SERVICE, bare.replace(b"Message-ID: ", b"X-Not-Message-ID: "))
        await mail.smtp.wait_for(SENDER, 3)
        threads = [(m.message_id, m.thread) for m in handed_on]
        assert threads[0] == (first_id, first_id) and threads[1][1] == first_id
        assert threads[2][0] == threads[2][1] and threads[2][0].startswith("imap:"), "no Message-ID: an id of the mailbox's own"
    finally:
        await communicator.stop()
