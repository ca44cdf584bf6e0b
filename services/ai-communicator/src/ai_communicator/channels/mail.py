"""E-mail: new mail read over IMAP (IDLE when offered), replies sent over SMTP.

The mailbox is the state: a message is unseen until its reply is sent, failing messages stay
unseen and are tried again with backoff, and one that fails every try is flagged (and moved when
IMAP_FAILED_FOLDER is set) so it never blocks the others.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from datetime import datetime
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from multyworkemon_common.logging import get_logger

from ..handling import APOLOGY, ChannelMetrics, MessageHandler, RetryBook
from ..messages import Failure, Inbound
from ..mailtext import IncomingMail, build_reply, parse_mail
from ..settings import CommunicatorSettings

log = get_logger("ai_communicator.mail")
CHANNEL = "email"
SIGNATURE = "MultyWorkemon — помощник по внутренним запросам"
IMAP_ERRORS = (OSError, asyncio.TimeoutError, aioimaplib.AioImapException, ssl.SSLError, EOFError)


class Mailer:
    """Sends mail over SMTP; a failure comes back as Failure (an outage or a refusal)."""

    def __init__(self, settings: CommunicatorSettings):
        self.host = settings.smtp_host
        self.port = settings.smtp_port
        self.security = settings.smtp_security
        self.username, self.password = settings.smtp_login
        self.sender = settings.sender_address
        self.timeout = settings.mail_timeout
        self._tls = settings.mail_tls_context()

    async def send(self, message: EmailMessage) -> str:
        try:
            await aiosmtplib.send(
                message, hostname=self.host, port=self.port, username=self.username or None, password=self.password or None,
                use_tls=self.security == "tls", start_tls=self.security == "starttls", tls_context=self._tls, timeout=self.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            raise Failure(f"SMTP refused the recipients: {codes}", outage=all(400 <= c < 500 for c in codes)) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise Failure(f"SMTP answered {exc.code}: {exc.message}", outage=400 <= exc.code < 500) from exc
        except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError, asyncio.TimeoutError) as exc:
            raise Failure(f"SMTP server unreachable: {type(exc).__name__}", outage=True) from exc
        except aiosmtplib.SMTPException as exc:
            raise Failure(f"SMTP failed: {exc}", outage=False) from exc
        return str(message["Message-ID"])


class MailChannel:
    def __init__(self, settings: CommunicatorSettings, handler: MessageHandler, mailer: Mailer, metrics: ChannelMetrics):
        self.settings = settings
        self.handler = handler
        self.mailer = mailer
        self.metrics = metrics
        self.connected = False
        self.retries = RetryBook(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
        self._uidvalidity = ""
        self._own_address = settings.sender_address.lower()

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set({"channel": CHANNEL}, 1 if value else 0)

    async def run(self) -> None:
        """Poll the mailbox until cancelled, reconnecting after any connection failure."""
        delay = 1.0
        while True:
            try:
                await self._session()
            except IMAP_ERRORS as exc:
                log.warning("IMAP connection failed; reconnecting", error=f"{type(exc).__name__}: {exc}", labels={"retry_in_s": str(delay)})
            finally:
                self._set_connected(False)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60.0)

    async def _session(self) -> None:
        s = self.settings
        lost = asyncio.Event()  # set by aioimaplib when the server closes the connection
        client = aioimaplib.IMAP4(
            host=s.imap_host, port=s.imap_port, timeout=s.mail_timeout, ssl_context=s.mail_tls_context(),
            conn_lost_cb=lambda _exc: lost.set(),
        )
        try:
            await client.wait_hello_from_server()
            response = await client.login(s.imap_user, s.imap_password.get_secret_value())
            _expect_ok(response, "LOGIN")
            response = await client.select(s.imap_folder)
            _expect_ok(response, "SELECT")
            self._uidvalidity = _uidvalidity(response.lines)
            self._set_connected(True)
            log.info("mailbox connected", labels={"host": s.imap_host, "folder": s.imap_folder, "idle": str(client.has_capability("IDLE"))})
            while not lost.is_set():
                await self._process_unseen(client)
                wait = self.retries.seconds_to_next()
                if client.has_capability("IDLE"):
                    await _idle(client, min(s.imap_idle_seconds, wait if wait is not None else s.imap_idle_seconds), lost)
                else:
                    await _until(lost, min(s.imap_poll_seconds, wait if wait is not None else s.imap_poll_seconds))
            raise ConnectionResetError("the IMAP server closed the connection")
        finally:
            try:
                await asyncio.wait_for(client.logout(), 2)
            except (*IMAP_ERRORS, Exception):  # noqa: BLE001 - the connection may be gone already
                pass

    async def _process_unseen(self, client: aioimaplib.IMAP4) -> None:
        response = await client.uid_search("UNSEEN", "UNFLAGGED", charset=None)
        _expect_ok(response, "SEARCH")
        uids = [uid for line in response.lines if line.startswith(b"SEARCH") or line[:1].isdigit() for uid in _search_uids(line)]
        self.retries.keep_only({(self._uidvalidity, uid) for uid in uids})
        for uid in uids:
            key = (self._uidvalidity, uid)
            if self.retries.due(key):
                await self._process(client, uid, key)

    async def _process(self, client: aioimaplib.IMAP4, uid: str, key) -> None:
        raw, arrived = await _fetch(client, uid)
        if raw is None:
            return  # gone meanwhile (another client deleted it)
        try:
            mail = parse_mail(raw)
        except Exception:  # noqa: BLE001 - a letter the parser chokes on must not stop the mailbox
            log.exception("unreadable mail; flagged", labels={"uid": uid})
            self.metrics.poison.inc({"channel": CHANNEL})
            await _add_flags(client, uid, "\\Flagged")
            return
        if mail.automatic or mail.sender == self._own_address:
            log.info("automatic mail or our own; marked seen, not answered", labels={"uid": uid})
            await _add_flags(client, uid, "\\Seen")
            return
        counter = self.metrics.retried if self.retries.seen(key) else self.metrics.received
        counter.inc({"channel": CHANNEL})
        inbound = Inbound(
            channel=CHANNEL, username=mail.sender, text=mail.text or mail.subject, message_id=mail.message_id or f"imap:{key[0]}:{uid}",
            arrived=arrived, reply=lambda text: self._reply(mail, text), sender_label=f"{mail.sender_name} <{mail.sender}>".strip(),
        )
        try:
            handled = await self.handler.attempt(inbound)
        except Failure as failure:
            self.metrics.failed.inc({"channel": CHANNEL})
            if self.retries.failed(key, failure):
                await self._set_aside(client, uid, mail, failure)
            else:
                log.warning("mail not handled; will retry", error=str(failure), labels={"uid": uid, "outage": str(failure.outage)})
            return
        # Only now, with the reply sent, the message counts as read.
        await _add_flags(client, uid, "\\Seen")
        self.retries.forget(key)
        if not handled.repeated:
            self.metrics.answered(CHANNEL, arrived)
        log.info("mail answered", labels={"uid": uid, "action": handled.answer.action, "turn_id": str(handled.answer.turn_id)})

    async def _reply(self, mail: IncomingMail, text: str) -> str:
        return await self.mailer.send(build_reply(mail, text, self.mailer.sender, SIGNATURE))

    async def _set_aside(self, client: aioimaplib.IMAP4, uid: str, mail: IncomingMail, failure: Failure) -> None:
        self.metrics.poison.inc({"channel": CHANNEL})
        log.error("mail failed every try; flagged and set aside", error=str(failure), labels={"uid": uid})
        try:
            await self._reply(mail, APOLOGY)
        except Failure as exc:
            log.warning("could not send the apology", error=str(exc), labels={"uid": uid})
        await _add_flags(client, uid, "\\Flagged")
        folder = self.settings.imap_failed_folder
        if folder and client.has_capability("MOVE"):
            await client.create(_quote(folder))  # NO when it exists already: fine
            response = await client.uid("move", uid, _quote(folder))
            if response.result != "OK":
                log.warning("could not move the mail aside", labels={"uid": uid, "folder": folder})


async def _until(event: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        pass


async def _idle(client: aioimaplib.IMAP4, seconds: float, lost: asyncio.Event) -> None:
    """Wait for the server to announce a change (or to go away), at most `seconds`."""
    seconds = max(seconds, 0.05)
    idle = await client.idle_start(timeout=seconds)
    push = asyncio.ensure_future(client.wait_server_push(timeout=seconds + 5))
    gone = asyncio.ensure_future(lost.wait())
    try:
        await asyncio.wait({push, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        push.cancel()
        gone.cancel()
        await asyncio.gather(push, gone, return_exceptions=True)
    if lost.is_set():
        idle.cancel()
        raise ConnectionResetError("the IMAP server closed the connection")
    if client.has_pending_idle():
        client.idle_done()
    await asyncio.wait_for(idle, 10)


async def _fetch(client: aioimaplib.IMAP4, uid: str) -> tuple[bytes | None, float]:
    # BODY.PEEK: reading does not set \Seen; that waits for the reply.
    response = await client.uid("fetch", uid, "(UID INTERNALDATE BODY.PEEK[])")
    _expect_ok(response, "FETCH")
    raw = next((bytes(line) for line in response.lines if isinstance(line, bytearray)), None)
    arrived = time.time()
    for line in response.lines:
        match = re.search(rb'INTERNALDATE "([^"]+)"', bytes(line)) if not isinstance(line, bytearray) else None
        if match:
            arrived = _internaldate(match.group(1).decode())
    return raw, arrived


def _internaldate(value: str) -> float:
    try:
        return datetime.strptime(value, "%d-%b-%Y %H:%M:%S %z").timestamp()
    except ValueError:
        return time.time()


async def _add_flags(client: aioimaplib.IMAP4, uid: str, flags: str) -> None:
    response = await client.uid("store", uid, "+FLAGS.SILENT", f"({flags})")
    _expect_ok(response, "STORE")


def _expect_ok(response, command: str) -> None:
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines if not isinstance(line, bytearray))[:200]
        raise aioimaplib.Error(f"{command} failed: {detail.decode(errors='replace')}")


def _search_uids(line: bytes) -> list[str]:
    return [token for token in line.decode(errors="replace").split() if token.isdigit()]


def _uidvalidity(lines) -> str:
    for line in lines:
        match = re.search(rb"UIDVALIDITY (\d+)", bytes(line))
        if match:
            return match.group(1).decode()
    return ""


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'
