"""The communicator's settings: which channels are on, where the secretary, Jira and the lock are."""

from __future__ import annotations

import ipaddress
import ssl
from typing import Literal

from pydantic import SecretStr, field_validator

from multyworkemon_common.settings import ServiceSettings


class CommunicatorSettings(ServiceSettings):
    port: int = 8003
    secretary_url: str = "http://localhost:8000"
    secretary_timeout: float = 180.0  # the secretary's own LLM retries fit inside
    # PostgreSQL holding the lock that lets one replica poll the mailbox and the bot; empty: this
    # process is the only replica and always polls.
    database_url: SecretStr = SecretStr("")
    lock_retry_seconds: float = 5.0

    # How a failing message is retried: a failure the peer reported counts, an outage does not.
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_max_seconds: float = 60.0

    # E-mail: on when IMAP_USER is set. Yandex: an app password (id.yandex.ru -> Security).
    imap_host: str = "imap.yandex.ru"
    imap_port: int = 993
    imap_user: str = ""
    imap_password: SecretStr = SecretStr("")
    imap_folder: str = "INBOX"
    imap_idle_seconds: float = 300.0  # IDLE is renewed this often (servers drop it after 30 min)
    imap_poll_seconds: float = 10.0  # without IDLE
    imap_failed_folder: str = ""  # poison messages are flagged; and moved here when set
    smtp_host: str = "smtp.yandex.ru"
    smtp_port: int = 465
    smtp_security: Literal["tls", "starttls"] = "tls"  # 465 implicit TLS, 587 STARTTLS
    smtp_user: str = ""  # defaults to IMAP_USER
    smtp_password: SecretStr = SecretStr("")  # defaults to IMAP_PASSWORD
    mail_from: str = ""  # defaults to the SMTP user (Yandex refuses any other sender)
    mail_ca_file: str = ""  # extra CA bundle for a mail server with a private certificate
    mail_timeout: float = 30.0
    # Whose From is believed (side actions need it; docs/communicator.md "Who sent a mail"):
    # the authserv-ids of our own mail server's Authentication-Results, comma-separated, "*.suffix"
    # for a farm of servers; and relays (IPs or CIDRs) whose mail counts as authenticated.
    mail_authserv_id: str = ""
    mail_trusted_relays: str = ""
    mail_replies_per_hour: int = 10  # per sender, against mail loops; 0: no cap
    mail_max_bytes: int = 2_000_000  # a larger mail is set aside unread, its sender told so
    mail_max_header_bytes: int = 65_536  # the header section read at most
    mail_max_text_chars: int = 20_000  # of a mail's text handed to the secretary and quoted in the reply

    # Telegram: on when TELEGRAM_BOT_TOKEN is set.
    telegram_bot_token: SecretStr = SecretStr("")
    telegram_api_url: str = "https://api.telegram.org"
    telegram_poll_timeout: int = 25  # long-polling seconds
    telegram_allowed_users: str = ""  # comma-separated user names or ids; empty: everyone
    # Messages of one chat waiting behind its unanswered one; more are declined with a notice, so
    # one chat cannot fill the window of updates Telegram hands out (100) and hold up the others.
    telegram_chat_queue: int = 10

    # Web chat identity: the e-mail an authenticating proxy (oauth2-proxy) puts into this header,
    # believed only from these peers (comma-separated IPs or CIDRs). Empty: anonymous mode.
    web_identity_header: str = "X-Auth-Request-Email"
    web_trusted_proxies: str = ""
    # The operator console (/operator/): these signed-in web users (e-mails as the proxy gives them,
    # comma-separated). Empty, or anonymous mode: nobody, every console page answers 403.
    operators: str = ""
    # Per web-chat client: per identity, and per peer address for anonymous ones (a cookie is free to drop).
    web_rate_per_minute: float = 20.0
    web_rate_burst: int = 10
    web_peer_rate_per_minute: float = 60.0
    web_peer_rate_burst: int = 30

    # Jira (REST API v2): Cloud uses JIRA_USER (e-mail) + API token, Server/Data Center a personal token.
    jira_base_url: str = ""
    jira_project_key: str = ""
    jira_user: str = ""
    jira_token: SecretStr = SecretStr("")
    jira_issue_type: str = "Task"
    jira_timeout: float = 30.0

    # Who is told, per department: a YAML file (see departments.example.yaml).
    departments_file: str = ""

    @field_validator("web_trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        _networks(value)  # a typo fails at start, not as a silently anonymous chat
        return value

    def web_trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return _networks(self.web_trusted_proxies)

    @property
    def web_identity_mode(self) -> str:
        """Which web-chat identity mode is on, for people (the `make run` summary, the start-up log)."""
        if self.web_trusted_proxies.strip():
            return f"signed in: the user is {self.web_identity_header} as set by {self.web_trusted_proxies.strip()}"
        return "anonymous: answers and links only, no actions in anyone's name (set WEB_TRUSTED_PROXIES behind a signing-in proxy)"

    @property
    def mail_enabled(self) -> bool:
        return bool(self.imap_user)

    @property
    def telegram_enabled(self) -> bool:
        return bool(self.telegram_bot_token.get_secret_value())

    @property
    def smtp_login(self) -> tuple[str, str]:
        return self.smtp_user or self.imap_user, (self.smtp_password.get_secret_value() or self.imap_password.get_secret_value())

    @property
    def sender_address(self) -> str:
        return self.mail_from or self.smtp_login[0]

    def mail_tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.mail_ca_file:
            context.load_verify_locations(self.mail_ca_file)
        return context

    def operator_emails(self) -> frozenset[str]:
        return frozenset(part.strip().lower() for part in self.operators.split(",") if part.strip())

    def allowed_telegram_users(self) -> set[str]:
        return {name.strip().lstrip("@").lower() for name in self.telegram_allowed_users.split(",") if name.strip()}


def _networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())
