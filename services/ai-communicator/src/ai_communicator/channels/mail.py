"""E-mail: new mail read over IMAP (IDLE when offered), replies sent over SMTP.

The mailbox is the state: a message is unseen until its reply is sent, failing messages stay
unseen and are tried again with backoff, and one that fails every try is flagged (and moved when
IMAP_FAILED_FOLDER is set) so it never blocks the others. Nothing a letter holds stops the
mailbox: its size is checked before its body is fetched, its header is read bounded, and any
failure with one letter counts against that letter only.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from contextlib import suppress
from datetime import datetime
from email.message import EmailMessage

import aioimaplib
import aiosmtplib

from multyworkemon_common.contract import FeedbackRequest
from multyworkemon_common.errors import UpstreamError
from multyworkemon_common.logging import get_logger

from ..handling import APOLOGY, ChannelMetrics, MessageHandler, RetryBook
from ..mailauth import SenderTrust
from ..mailtext import IncomingMail, Unreadable, build_reply, read_head, with_body
from ..messages import Failure, Inbound
from ..reconnect import Reconnect
from ..settings import CommunicatorSettings

log = get_logger("ai_communicator.mail")
CHANNEL = "email"
SIGNATURE = "MultyWorkemon — помощник по внутренним запросам"
# The connection is gone: reconnect. Any other failure while handling a letter is that letter's.
CONNECTION_ERRORS = (OSError, asyncio.TimeoutError, ssl.SSLError, EOFError, aioimaplib.Abort, aioimaplib.CommandTimeout, aioimaplib.IncompleteRead)
IMAP_ERRORS = (*CONNECTION_ERRORS, aioimaplib.AioImapException)
# Under an answer; a reply on the thread holding just the digit is a rating, not a new request.
FEEDBACK_HINT = "Ответ помог? Ответьте на это письмо одной цифрой: 1 — да, 2 — нет."
RATINGS = {"1": "up", "2": "down"}
TOO_LARGE = (
    "Письмо слишком большое ({size:.1f} МБ): я читаю письма до {limit:.1f} МБ. Пришлите, пожалуйста, "
    "запрос текстом без вложений; файл можно положить в общую папку и прислать ссылку на него."
)


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


class ReplyCap:
    """Replies per sender in the last hour, so two robots cannot keep each other busy (RFC 3834 asks
    for such a limit). Authenticated and other mail of one address count apart, so forged mail
    cannot use up a colleague's replies. Kept in memory: one replica polls a mailbox at a time (the
    poller lock), and after a takeover a sender can get at most twice the cap in that hour."""

    WINDOW = 3600.0

    def __init__(self, per_hour: int):
        self.per_hour = per_hour  # 0: no cap
        self._sent: dict[tuple[str, bool], deque[float]] = {}

    def full(self, mail: IncomingMail) -> bool:
        return self.per_hour > 0 and len(self._recent((mail.sender, mail.verified))) >= self.per_hour

    def sent(self, mail: IncomingMail) -> None:
        self._recent((mail.sender, mail.verified)).append(time.monotonic())
        if len(self._sent) > 10_000:  # forget senders quiet for an hour
            for quiet in [key for key, times in self._sent.items() if times[-1] < time.monotonic() - self.WINDOW]:
                del self._sent[quiet]

    def _recent(self, key: tuple[str, bool]) -> deque[float]:
        times = self._sent.setdefault(key, deque())
        while times and times[0] < time.monotonic() - self.WINDOW:
            times.popleft()
        return times


class MailChannel:
    def __init__(self, settings: CommunicatorSettings, handler: MessageHandler, mailer: Mailer, metrics: ChannelMetrics):
        self.settings = settings
        self.handler = handler
        self.mailer = mailer
        self.metrics = metrics
        self.connected = False
        self.retries = RetryBook(settings.max_attempts, settings.retry_base_seconds, settings.retry_max_seconds)
        self.reconnect = Reconnect()
        self.trust = SenderTrust.from_settings(settings.mail_authserv_id, settings.mail_trusted_relays)
        self.replies = ReplyCap(settings.mail_replies_per_hour)
        self._uidvalidity = ""
        self._own_address = settings.sender_address.lower()

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        self.metrics.connected.set({"channel": CHANNEL}, 1 if value else 0)

    async def run(self) -> None:
        """Poll the mailbox until cancelled, reconnecting after any connection failure."""
        while True:
            try:
                await self._session()
            except IMAP_ERRORS as exc:
                log.warning("IMAP connection failed; reconnecting", error=f"{type(exc).__name__}: {exc}", labels={"failures": str(self.reconnect.failures + 1)})
            finally:
                self._set_connected(False)
            await self.reconnect.wait()

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
            self.reconnect.connected()
            log.info("mailbox connected", labels={"host": s.imap_host, "folder": s.imap_folder, "idle": str(client.has_capability("IDLE"))})
            while not lost.is_set():
                # Until a search finds nothing to do: mail that came while others were handled was
                # announced in their commands' answers, and IDLE would not announce it again.
                while await self._process_unseen(client):
                    pass
                wait = self.retries.seconds_to_next()
                if client.has_capability("IDLE"):
                    await _idle(client, min(s.imap_idle_seconds, wait if wait is not None else s.imap_idle_seconds), lost)
                else:
                    await _until(lost, min(s.imap_poll_seconds, wait if wait is not None else s.imap_poll_seconds))
            raise ConnectionResetError("the IMAP server closed the connection")
        finally:
            try:
                async with asyncio.timeout(2):
                    await client.logout()
            except (*IMAP_ERRORS, Exception):  # noqa: BLE001 - the connection may be gone already
                pass

    async def _process_unseen(self, client: aioimaplib.IMAP4) -> bool:
        """Handle the unseen letters that are due; False when there were none."""
        response = await client.uid_search("UNSEEN", "UNFLAGGED", charset=None)
        _expect_ok(response, "SEARCH")
        uids = [uid for line in response.lines if line.startswith(b"SEARCH") or line[:1].isdigit() for uid in _search_uids(line)]
        self.retries.keep_only({(self._uidvalidity, uid) for uid in uids})
        due = [uid for uid in uids if self.retries.due((self._uidvalidity, uid))]
        for uid in due:
            await self._process(client, uid, (self._uidvalidity, uid))
        return bool(due)

    async def _process(self, client: aioimaplib.IMAP4, uid: str, key) -> None:
        """One letter. Whatever goes wrong with it counts against it alone; only a lost connection ends the session."""
        try:
            await self._read_and_answer(client, uid, key)
        except CONNECTION_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - no letter may stop the mailbox
            log.exception("unexpected failure with a mail", labels={"uid": uid})
            self.metrics.failed.inc({"channel": CHANNEL})
            if self.retries.failed(key, Failure(f"unexpected {type(exc).__name__}", outage=False)):
                await self._set_aside(client, uid, key, f"failed every try: {type(exc).__name__}")

    async def _read_and_answer(self, client: aioimaplib.IMAP4, uid: str, key) -> None:
        s = self.settings
        head = await _fetch_head(client, uid, s.mail_max_header_bytes)
        if head is None:  # deleted meanwhile (then it leaves the search too) or a server's oddity: try later
            raise LookupError("the server returned no such message")
        size, arrived, header, complete = head
        mail = read_head(header)
        mail.verified = self.trust.verified(mail.fields, mail.sender)
        why_not = self._why_not_answer(mail)
        if why_not:
            log.info("mail not answered; marked seen", labels={"uid": uid, "reason": why_not})
            await _add_flags(client, uid, "\\Seen")
            self.retries.forget(key)
            return
        if size > s.mail_max_bytes or not complete:
            # Never fetched: a 21 MB letter once cost 260 MB of memory.
            note = TOO_LARGE.format(size=size / 1e6, limit=s.mail_max_bytes / 1e6)
            await self._set_aside(client, uid, key, f"too large: {size} bytes, header complete: {complete}", mail, note)
            return
        raw = await _fetch_body(client, uid)
        if raw is None:
            raise LookupError("the server returned no such message")
        try:
            mail = with_body(mail, raw, s.mail_max_text_chars)
        except Unreadable as exc:
            await self._set_aside(client, uid, key, f"unreadable: {exc}", mail, APOLOGY)
            return
        if await self._rated(mail):
            await _add_flags(client, uid, "\\Seen")
            self.retries.forget(key)
            return
        counter = self.metrics.retried if self.retries.seen(key) else self.metrics.received
        counter.inc({"channel": CHANNEL})
        # The sender's own Message-ID keeps retries idempotent (the secretary keys it on the sender too).
        own_id = f"imap:{self._uidvalidity}:{uid}"
        inbound = Inbound(
            channel=CHANNEL, username=mail.sender, text=mail.text or mail.subject, message_id=mail.message_id or own_id,
            arrived=arrived, reply=lambda text, turn: self._reply(mail, f"{text}\n\n{FEEDBACK_HINT}" if turn else text), sender_label=f"{mail.sender_name} <{mail.sender}>".strip(),
            thread=mail.thread or own_id, verified=mail.verified,
        )
        try:
            handled = await self.handler.attempt(inbound)
        except Failure as failure:
            self.metrics.failed.inc({"channel": CHANNEL})
            if self.retries.failed(key, failure):
                await self._set_aside(client, uid, key, f"failed every try: {failure}", mail, APOLOGY)
            else:
                log.warning("mail not handled; will retry", error=str(failure), labels={"uid": uid, "outage": str(failure.outage)})
            return
        # Only now, with the reply sent, the message counts as read.
        await _add_flags(client, uid, "\\Seen")
        self.retries.forget(key)
        if not handled.repeated:
            self.metrics.answered(CHANNEL, arrived)
        log.info("mail answered", labels={"uid": uid, "action": handled.answer.action, "turn_id": str(handled.answer.turn_id), "verified": str(inbound.verified)})

    async def _rated(self, mail: IncomingMail) -> bool:
        """A "1" or "2" in reply to one of our answers to this sender: their rating of it, stored.
        Anything else (or a digit the secretary cannot match to their answer) is a request."""
        rating = RATINGS.get(mail.text.strip())
        if rating is None or not mail.references or not mail.sender:
            return False
        request = FeedbackRequest(channel=CHANNEL, username=mail.sender, rating=rating, reply_id=mail.references[-1])
        try:
            result = await self.handler.secretary.rate(request)
        except UpstreamError as exc:
            raise Failure(f"could not store the rating: {exc.message}", outage=exc.answered in (None, 503)) from exc
        if result is not None:
            log.info("mail rating stored", labels={"turn_id": str(result.turn_id), "rating": rating})
        return result is not None

    def _why_not_answer(self, mail: IncomingMail) -> str:
        if mail.automatic:
            return mail.automatic
        if mail.sender == self._own_address:
            return "our own mail"
        if self.replies.full(mail):
            return f"the sender got {self.replies.per_hour} replies in the last hour"
        return ""

    async def _reply(self, mail: IncomingMail, text: str) -> str:
        sent = await self.mailer.send(build_reply(mail, text, self.mailer.sender, SIGNATURE))
        self.replies.sent(mail)
        return sent

    async def _set_aside(self, client: aioimaplib.IMAP4, uid: str, key, reason: str, mail: IncomingMail | None = None, note: str = "") -> None:
        """Flag (and move) the letter first, so that nothing after it can bring it back; then, as a
        courtesy, tell the sender."""
        self.metrics.poison.inc({"channel": CHANNEL})
        log.error("mail set aside", error=reason, labels={"uid": uid})
        await _add_flags(client, uid, "\\Flagged")
        self.retries.forget(key)
        folder = self.settings.imap_failed_folder
        if folder and client.has_capability("MOVE"):
            await client.create(_quote(folder))  # NO when it exists already: fine
            response = await client.uid("move", uid, _quote(folder))
            if response.result != "OK":
                log.warning("could not move the mail aside", labels={"uid": uid, "folder": folder})
        if mail is None or not note or self._why_not_answer(mail):
            return
        try:
            await self._reply(mail, note)
        except Exception as exc:  # noqa: BLE001 - set aside already; the note is a courtesy
            log.warning("could not tell the sender", error=f"{type(exc).__name__}: {exc}", labels={"uid": uid})


async def _until(event: asyncio.Event, seconds: float) -> None:
    with suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


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
    async with asyncio.timeout(10):
        await idle


async def _fetch_head(client: aioimaplib.IMAP4, uid: str, limit: int) -> tuple[int, float, bytes, bool] | None:
    """Size, arrival and at most `limit` bytes of the header (cut at a line), and whether that is all of it."""
    # BODY.PEEK: reading does not set \Seen; that waits for the reply.
    response = await client.uid("fetch", uid, f"(UID RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER]<0.{limit + 1}>)")
    _expect_ok(response, "FETCH")
    text = b" ".join(bytes(line) for line in response.lines if not isinstance(line, bytearray))
    size = re.search(rb"RFC822\.SIZE (\d+)", text)
    if size is None:
        return None
    header = next((bytes(line) for line in response.lines if isinstance(line, bytearray)), b"")
    complete = len(header) <= limit
    if not complete:
        header = header[: header.rfind(b"\n") + 1]
    date = re.search(rb'INTERNALDATE "([^"]+)"', text)
    return int(size.group(1)), (_internaldate(date.group(1).decode()) if date else time.time()), header, complete


async def _fetch_body(client: aioimaplib.IMAP4, uid: str) -> bytes | None:
    response = await client.uid("fetch", uid, "(UID BODY.PEEK[])")
    _expect_ok(response, "FETCH")
    return next((bytes(line) for line in response.lines if isinstance(line, bytearray)), None)


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
