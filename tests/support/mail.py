"""Real mail peers for the tests: a Dovecot IMAP server and an aiosmtpd SMTP server, both over TLS.

Dovecot runs from Debian's package with its own configuration, folders and a passwd-file in a
temporary directory, on a free loopback port (IMAPS). The SMTP server takes the replies (implicit
TLS, AUTH required) and keeps them. Both use certificates of a CA the tests make (trustme), which
the communicator trusts through MAIL_CA_FILE. Mail reaches the mailbox by IMAP APPEND.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import aioimaplib
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from support.stack import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's per-connection chatter


class TestCA:
    """A CA and one loopback certificate, written where servers and clients can read them."""

    def __init__(self, folder: Path):
        self.ca = trustme.CA()
        self.cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = folder / "ca.pem"
        self.cert_file = folder / "cert.pem"
        self.key_file = folder / "key.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert.cert_chain_pems[0].write_to_path(str(self.cert_file))
        for extra in self.cert.cert_chain_pems[1:]:
            with open(self.cert_file, "ab") as out:
                out.write(extra.bytes())
        self.cert.private_key_pem.write_to_path(str(self.key_file))

    def server_context(self):
        import ssl

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.cert.configure_cert(context)
        return context

    def client_context(self):
        import ssl

        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


class Dovecot:
    """Dovecot serving IMAPS for `users` ({name: password}) from a temporary folder."""

    def __init__(self, folder: Path, ca: TestCA, users: dict[str, str], capability: str = ""):
        self.folder = folder
        self.ca = ca
        self.users = users
        self.capability = capability  # replaces what the server announces (e.g. a server without IDLE)
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "Dovecot":
        root = self.folder
        me = pwd.getpwuid(os.geteuid()).pw_name
        # As root Dovecot drops to its own users; otherwise everything runs as the current user.
        internal, login = ("dovecot", "dovenull") if os.geteuid() == 0 else (me, me)
        mail_user = pwd.getpwnam(internal)
        for sub in ("run", "state", "mail"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        (root / "passwd").write_text("".join(f"{name}:{{PLAIN}}{password}::::::\n" for name, password in self.users.items()))
        os.chmod(root / "passwd", 0o644)
        for path in (self.ca.cert_file, self.ca.key_file):
            os.chmod(path, 0o644)
        config = f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = mw-test-{self.port}
listen = 127.0.0.1
protocols = imap
log_path = {root}/dovecot.log
default_internal_user = {internal}
default_internal_group = {_group(internal)}
default_login_user = {login}
ssl = required
ssl_cert = <{self.ca.cert_file}
ssl_key = <{self.ca.key_file}
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
mail_uid = {mail_user.pw_uid}
mail_gid = {mail_user.pw_gid}
first_valid_uid = 0
{f"imap_capability = {self.capability}" if self.capability else ""}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user.pw_uid} gid={mail_user.pw_gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
        (root / "dovecot.conf").write_text(config)
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() ends the children too
        )
        deadline = time.monotonic() + 15
        import socket

        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.process.stdout.read().decode()} {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot did not listen on {self.port}: {self.log()}")

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def bytes_sent(self) -> list[int]:
        """What each ended IMAP session was sent (`out=` of Dovecot's logout line), in bytes."""
        import re

        return [int(n) for n in re.findall(r"imap\(.*?\bout=(\d+)", self.log())]

    def stop(self) -> None:
        """Stop the server and every session it serves (as a crash or a restart would)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # sessions the master left behind
        except ProcessLookupError:
            pass

    # The test's own IMAP client: deliver mail and look at flags.
    async def client(self, user: str) -> aioimaplib.IMAP4:
        imap = aioimaplib.IMAP4(host="127.0.0.1", port=self.port, ssl_context=self.ca.client_context(), timeout=10)
        await imap.wait_hello_from_server()
        response = await imap.login(user, self.users[user])
        assert response.result == "OK", response
        return imap

    async def deliver(self, user: str, message: EmailMessage | bytes, folder: str = "INBOX") -> None:
        imap = await self.client(user)
        try:
            raw = message if isinstance(message, bytes) else message.as_bytes()
            response = await imap.append(raw, mailbox=folder)
            assert response.result == "OK", response
        finally:
            await imap.logout()

    async def flags(self, user: str, folder: str = "INBOX") -> dict[str, set[str]]:
        """Message-ID -> flags of every message in the folder."""
        imap = await self.client(user)
        try:
            await imap.select(folder)
            response = await imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            result: dict[str, set[str]] = {}
            flags: set[str] = set()
            for line in response.lines:
                if isinstance(line, bytearray):
                    header = email.message_from_bytes(bytes(line), policy=email.policy.default)
                    result[str(header.get("Message-ID", "")).strip()] = flags
                elif b"FLAGS (" in line:
                    inner = bytes(line).split(b"FLAGS (", 1)[1].split(b")", 1)[0]
                    flags = set(inner.decode().split())
            return result
        finally:
            await imap.logout()


def _group(user: str) -> str:
    import grp

    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


class _Controller(Controller):
    def factory(self):
        # The whole connection is TLS (implicit, port 465 style); aiosmtpd only counts STARTTLS as
        # TLS and warns about AUTH without it.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return super().factory()


@dataclass
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """aiosmtpd with implicit TLS and AUTH; keeps what it receives; refuses `refused` recipients."""

    ca: TestCA
    user: str
    password: str
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> "SmtpServer":
        self._controller = _Controller(
            self, hostname="127.0.0.1", port=self.port, ssl_context=self.ca.server_context(),
            authenticator=self._authenticate, auth_required=True,
            auth_require_tls=False,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.user and auth_data.password.decode() == self.password
        return AuthResult(success=ok)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return "550 5.1.1 Mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address.lower() in (a.lower() for a in r.recipients)]

    async def wait_for(self, address: str, count: int = 1, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.to(address)
            if len(messages) >= count:
                return messages
            await asyncio.sleep(0.05)
        raise AssertionError(f"{address} got {len(self.to(address))} mail(s), expected {count}")


class MailPeers:
    """A mailbox for the service (IMAP) and the SMTP server it sends through, in one folder."""

    SERVICE = "helpdesk@mw.test"
    PASSWORD = "app-password-for-tests"

    def __init__(self, capability: str = "") -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mw-mail-"))
        os.chmod(self.folder, 0o755)  # Dovecot's own users must reach its files
        self.ca = TestCA(self.folder)
        self.dovecot = Dovecot(self.folder / "dovecot", self.ca, {self.SERVICE: self.PASSWORD}, capability).start()
        self.smtp = SmtpServer(self.ca, self.SERVICE, self.PASSWORD).start()

    def settings(self) -> dict:
        """The communicator's settings for this mailbox."""
        return {
            "imap_host": "127.0.0.1", "imap_port": self.dovecot.port, "imap_user": self.SERVICE, "imap_password": self.PASSWORD,
            "smtp_host": "127.0.0.1", "smtp_port": self.smtp.port, "mail_ca_file": str(self.ca.ca_file),
        }

    def stop(self) -> None:
        self.smtp.stop()
        self.dovecot.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
