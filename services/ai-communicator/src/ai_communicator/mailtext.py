"""Reading a mail (MIME, charsets, HTML, quoted history, signature) and writing a threaded reply."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser


@dataclass
class IncomingMail:
    message_id: str  # with the angle brackets, as in the header
    subject: str
    sender: str  # the address, lower case
    sender_name: str
    reply_to: str  # where a reply goes
    references: str
    text: str  # the new part of the letter: no quoted history, no signature
    full_text: str  # the whole body as text, for quoting in the reply
    automatic: bool  # an auto-reply, a bounce or a list message: never answered
    date: datetime | None


def parse_mail(raw: bytes) -> IncomingMail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    sender_name, sender = parseaddr(_header(message, "From"))
    reply_name, reply_to = parseaddr(_header(message, "Reply-To"))
    full_text = body_text(message)
    try:
        date = parsedate_to_datetime(_header(message, "Date")) if message.get("Date") else None
    except (TypeError, ValueError):
        date = None
    return IncomingMail(
        message_id=_header(message, "Message-ID").strip(),
        subject=" ".join(_header(message, "Subject").split()),
        sender=sender.lower(),
        sender_name=sender_name,
        reply_to=formataddr((reply_name, reply_to)) if reply_to else formataddr((sender_name, sender)),
        references=" ".join(_header(message, "References").split()),
        text=strip_reply(full_text),
        full_text=full_text,
        automatic=_is_automatic(message, sender),
        date=date,
    )


def _header(message: EmailMessage, name: str) -> str:
    try:
        return str(message.get(name) or "")
    except (ValueError, IndexError, TypeError):  # a header too malformed to parse: as if absent
        return ""


def _is_automatic(message: EmailMessage, sender: str) -> bool:
    auto = _header(message, "Auto-Submitted").strip().lower()
    precedence = _header(message, "Precedence").strip().lower()
    local = sender.split("@")[0].lower()
    return (
        (auto not in ("", "no"))
        or precedence in ("bulk", "junk", "list", "auto_reply")
        or bool(message.get("X-Autoreply") or message.get("X-Autorespond"))
        or local in ("mailer-daemon", "postmaster")
        or not sender
    )


def body_text(message: EmailMessage) -> str:
    """The letter as plain text: the text part, else the HTML part turned into text."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = _decoded(part)
    if part.get_content_subtype() == "html":
        content = html_to_text(content)
    return content.replace("\r\n", "\n").strip()


def _decoded(part: EmailMessage) -> str:
    try:
        return part.get_content()
    except (LookupError, UnicodeError):  # an unknown or wrong charset label: keep what can be read
        payload = part.get_payload(decode=True) or b""
        for charset in ("utf-8", "windows-1251"):
            try:
                return payload.decode(charset)
            except UnicodeDecodeError:
                continue
        return payload.decode("utf-8", errors="replace")


class _HtmlText(HTMLParser):
    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "hr"}
    SKIPPED = {"script", "style", "head", "title", "blockquote"}  # blockquote: the quoted history

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        classes = dict(attrs).get("class") or ""
        if tag in self.SKIPPED or "gmail_quote" in classes:
            self._skip += 1
        elif tag in self.BLOCKS and not self._skip:
            self.parts.append("\n")

    def handle_endtag(self, tag):
        if tag in self.SKIPPED and self._skip:
            self._skip -= 1
        elif tag in self.BLOCKS and not self._skip:
            self.parts.append("\n")

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(re.sub(r"[ \t\r\n\xa0]+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HtmlText()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# Where the quoted history of a reply starts.
_HISTORY = re.compile(
    r"""^(?:
        -{2,}\s*(?:original\ message|исходное\ сообщение|пересылаемое\ сообщение|forwarded\ message)\s*-{2,}
      | on\ .{3,200}\ wrote:\s*
      | .{0,200}\ (?:написал|написала|написал\(а\)|пишет)\s*:\s*
      | .{0,200}<[^<>@\s]+@[^<>\s]+>\s*:\s*
      | (?:from|от|отправлено|sent):\s.+
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# Where a signature starts: the standard "-- " line, a sign-off, a phone's footer.
_SIGNATURE = re.compile(
    r"^(?:--\s*|_{3,}|(?:с\ уважением|с\ наилучшими\ пожеланиями|best\ regards|kind\ regards|regards)[,.!]?\s*"
    r"|(?:отправлено|sent)\ (?:с|from)\ .{1,60})$",
    re.IGNORECASE | re.VERBOSE,
)


def strip_reply(text: str) -> str:
    """The new part of a letter: up to the quoted history or the signature, without '>' lines."""
    kept: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if kept and any(k.strip() for k in kept) and (_HISTORY.match(stripped) or _SIGNATURE.match(stripped)):
            break
        kept.append(line.rstrip())
    result = re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()
    return result or text.strip()


def reply_subject(subject: str) -> str:
    subject = subject.strip() or "(без темы)"
    return subject if re.match(r"^(re|ответ|отв)\s*(\[\d+\])?\s*:", subject, re.IGNORECASE) else f"Re: {subject}"


def build_reply(original: IncomingMail, text: str, sender: str, signature: str) -> EmailMessage:
    """A reply mail clients thread with the original: Re: subject, In-Reply-To and References."""
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = original.reply_to
    reply["Subject"] = reply_subject(original.subject)
    if original.message_id:
        reply["In-Reply-To"] = original.message_id
        reply["References"] = f"{original.references} {original.message_id}".strip()
    reply["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    reply["Date"] = format_datetime(datetime.now(timezone.utc))
    # Tells the other side's auto-responders not to answer us (and our own reader skips such mail).
    reply["Auto-Submitted"] = "auto-replied"
    when = format_datetime(original.date) if original.date else ""
    quoted = "\n".join(f"> {line}" if line else ">" for line in original.full_text.split("\n"))
    body = f"{text}\n\n-- \n{signature}\n\n{when}, {original.reply_to}:\n{quoted}\n"
    reply.set_content(body)
    return reply


def build_note(sender: str, to: str, subject: str, text: str, signature: str) -> EmailMessage:
    """A new letter (the department mailing)."""
    note = EmailMessage()
    note["From"] = sender
    note["To"] = to
    note["Subject"] = subject
    note["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    note["Date"] = format_datetime(datetime.now(timezone.utc))
    note["Auto-Submitted"] = "auto-generated"
    note.set_content(f"{text}\n\n-- \n{signature}\n")
    return note
