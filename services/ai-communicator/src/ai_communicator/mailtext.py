"""Reading a mail (headers first and bounded, then MIME, charsets, HTML, quoted history, signature)
and writing a threaded reply.

Every value taken from a mail is bounded and cleaned before use: a header may carry encoded CR/LF
(which would make building the reply raise), tens of thousands of addresses, or megabytes of MIME
parameters, and the stdlib's header parser (email.policy.default) is superlinear in those: a From
with 50k addresses took 95 s here, a 318 KB Content-Type parameter list 155 s. So the headers are
split with compat32 (linear, no interpretation) and only bounded values reach the full parser.
"""

from __future__ import annotations

import email
import email.policy
import re
import unicodedata
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from email.header import decode_header, make_header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import format_datetime, formataddr, getaddresses, make_msgid, parsedate_to_datetime
from html.parser import HTMLParser

# Bounds on what is read from a mail (the sizes that are settings live in settings.py).
MAX_FIELD_CHARS = 2000  # a Subject or From value handed to the stdlib's parser
MAX_FROM_ADDRESSES = 10  # "@" in a From value before it is parsed at all; one sender is expected
MAX_ID_CHARS = 250  # one Message-ID
MAX_REFERENCES = 10  # ids kept from References: the first (the thread's root) and the last ones
MAX_SUBJECT_CHARS = 300
MAX_NAME_CHARS = 100
MAX_PARTS = 200  # MIME parts of one mail
MAX_MIME_HEADER_CHARS = 2000  # Content-Type, -Disposition, -Transfer-Encoding of a part

# A msg-id as RFC 5322 writes it, printable ASCII only, and no encoded word: the stdlib decodes one
# in a header it is given, so "<a=?utf-8?q?=0D=0A?=b@x>" in In-Reply-To would inject a header line.
_MSG_ID = re.compile(r"<(?![^>]*=\?)[\x21-\x3b\x3d\x3f-\x7e]{1,%d}>" % MAX_ID_CHARS)
_ADDRESS = re.compile(r"[^\s\x00-\x1f\x7f@<>()\[\],;:\"\\]{1,64}@[^\s\x00-\x1f\x7f@<>()\[\],;:\"\\]{1,253}")
_LISTS = ("list-id", "list-unsubscribe", "list-post")
# RFC 3834 section 2: never answer these senders' mail.
_ROBOT_LOCAL = re.compile(r"^(?:mailer-daemon|postmaster|no-?reply|do-?not-?reply|owner-.*|.*-request)$")


@dataclass
class IncomingMail:
    message_id: str  # "<id>" from the Message-ID header, cleaned; "" when there is none
    subject: str
    sender: str  # the one From address, lower case; "" when From is not exactly one address
    sender_name: str
    references: list[str]  # cleaned ids, the thread's root first
    thread: str  # the root Message-ID of the discussion this mail belongs to ("" when none)
    automatic: str  # why this mail must not be answered (auto-reply, bounce, list, ...); "" when it may
    date: datetime | None
    fields: list[tuple[str, str]] = field(default_factory=list)  # (lower-case name, unfolded value), top first
    verified: bool = False  # the From is the real sender (the channel decides: mailauth.SenderTrust)
    text: str = ""  # the new part of the letter: no quoted history, no signature
    full_text: str = ""  # the whole body as text, for quoting in the reply


class Unreadable(ValueError):
    """A mail whose MIME structure is beyond the bounds (too many parts, giant part headers)."""


def parse_mail(raw: bytes, max_chars: int = 20_000) -> IncomingMail:
    """A whole mail: the header, then the body as text of at most `max_chars`."""
    return with_body(read_head(raw), raw, max_chars)


def read_head(raw: bytes) -> IncomingMail:
    """The header alone (a mail's header section, or the whole mail); the body is not parsed."""
    message = BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    fields = [(name.lower(), _unfold(value)) for name, value in message.raw_items()]
    sender, sender_name = _sender(fields)
    message_id = _first_id(_value(fields, "message-id"))
    references = _ids(_value(fields, "references"))
    reply_to_id = _first_id(_value(fields, "in-reply-to"))
    if reply_to_id and reply_to_id not in references:
        references.append(reply_to_id)
    if len(references) > MAX_REFERENCES:  # RFC 5322 3.6.4: keep the first and the most recent
        references = references[:1] + references[-(MAX_REFERENCES - 1):]
    return IncomingMail(
        message_id=message_id,
        subject=clean(_decoded_field("subject", _value(fields, "subject")), MAX_SUBJECT_CHARS),
        sender=sender,
        sender_name=sender_name,
        references=references,
        thread=(references[0] if references else message_id),
        automatic=_automatic(fields, sender),
        date=_date(_value(fields, "date")),
        fields=fields,
    )


def with_body(head: IncomingMail, raw: bytes, max_chars: int) -> IncomingMail:
    # The structure is checked on compat32's reading first: policy.default parses the Content-Type of
    # every part while it splits the mail, superlinear in its parameters.
    _check_structure(email.message_from_bytes(raw, policy=email.policy.compat32))
    message = email.message_from_bytes(raw, policy=email.policy.default)
    full_text = body_text(message, max_chars)
    return replace(head, text=strip_reply(full_text), full_text=full_text)


def clean(text: str, limit: int) -> str:
    """One line of at most `limit` characters, safe to put in a header: control and format characters
    (CR, LF, zero-width, bidi) become spaces, and "=?" is broken up, since the stdlib decodes encoded
    words again when a header is set (a decoded "=?utf-8?q?=0D=0A?=" would become a real CR/LF)."""
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text[: limit * 4])
    return " ".join(text.split())[:limit].strip().replace("=?", "= ?")


def _unfold(value: str) -> str:
    # compat32 keeps folded lines and undecodable bytes (as surrogates): unfold, read the bytes as UTF-8 (RFC 6532).
    value = re.sub(r"\r?\n(?=[ \t])", "", value)
    return value.encode("ascii", "surrogateescape").decode("utf-8", "replace")


def _value(fields: list[tuple[str, str]], name: str) -> str:
    return next((value for key, value in fields if key == name), "")


def _values(fields: list[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in fields if key == name]


def _first_id(value: str) -> str:
    match = _MSG_ID.search(value[: MAX_ID_CHARS * 4])
    return match.group(0) if match else ""


def _ids(value: str) -> list[str]:
    ids: list[str] = []
    for match in _MSG_ID.finditer(value[: MAX_ID_CHARS * 200]):
        if match.group(0) not in ids:
            ids.append(match.group(0))
    return ids


def _decoded_field(name: str, value: str):
    """The stdlib's reading of a bounded header value (encoded words decoded); None when it fails."""
    try:
        return email.policy.default.header_factory(name, value[:MAX_FIELD_CHARS])
    except (ValueError, IndexError, TypeError, AttributeError):  # too malformed to parse: as if absent
        return None


def _sender(fields: list[tuple[str, str]]) -> tuple[str, str]:
    """The From address and name, when there is exactly one From header with exactly one address."""
    values = _values(fields, "from")
    if len(values) != 1 or len(values[0]) > MAX_FIELD_CHARS or values[0].count("@") > MAX_FROM_ADDRESSES:
        return "", ""
    addresses = [(a.display_name, a.addr_spec) for a in getattr(_decoded_field("from", values[0]), "addresses", ())]
    if not (len(addresses) == 1 and _ADDRESS.fullmatch(addresses[0][1] or "")):
        # Some senders (Python's own compat32 MIMEText among them) encode "Имя <address>" whole.
        try:
            addresses = getaddresses([str(make_header(decode_header(values[0])))])
        except (ValueError, LookupError, UnicodeError):
            return "", ""
    if len(addresses) != 1 or not _ADDRESS.fullmatch(addresses[0][1] or ""):
        return "", ""
    return addresses[0][1].lower(), clean(addresses[0][0] or "", MAX_NAME_CHARS)


def _date(value: str) -> datetime | None:
    try:
        return parsedate_to_datetime(value[:200]) if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _automatic(fields: list[tuple[str, str]], sender: str) -> str:
    """Why the mail must not be answered (RFC 3834, list mail, reports), or ""."""

    def first(name: str) -> str:
        return _value(fields, name)[:200].strip().lower()

    suppress = {token.strip() for token in first("x-auto-response-suppress").split(",")}
    if not sender:
        return "no single sender address"
    if first("auto-submitted") not in ("", "no"):
        return "Auto-Submitted"
    if first("precedence") in ("bulk", "junk", "list", "auto_reply"):
        return "Precedence"
    if any(first(name) for name in _LISTS):
        return "list mail"
    if suppress & {"all", "autoreply"}:
        return "X-Auto-Response-Suppress"
    if first("content-type").startswith("multipart/report"):
        return "a delivery or read report"
    if any(first(name) for name in ("x-autoreply", "x-autorespond", "x-autogenerated")):
        return "an auto-responder's header"
    if first("return-path") == "<>":
        return "an empty return path"
    if _ROBOT_LOCAL.match(sender.rpartition("@")[0]):
        return "a robot's address"
    return ""


def body_text(message: EmailMessage, max_chars: int) -> str:
    """The letter as plain text, at most `max_chars`: the text part, else the HTML part turned into text."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    content = _decoded(part)
    if part.get_content_subtype() == "html":
        content = html_to_text(content[: max_chars * 10])
    return content.replace("\r\n", "\n").strip()[:max_chars]


def _check_structure(message: Message) -> None:
    """Refuse what would make the MIME reader slow: too many parts, or a giant part header it parses."""
    for count, part in enumerate(message.walk(), start=1):
        if count > MAX_PARTS:
            raise Unreadable(f"more than {MAX_PARTS} MIME parts")
        for name, value in part.raw_items():
            if name.lower() in ("content-type", "content-disposition", "content-transfer-encoding") and len(value) > MAX_MIME_HEADER_CHARS:
                raise Unreadable(f"a {name} header of {len(value)} characters")


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
    """A reply to the mail's sender (its From, never Reply-To) that clients thread with the original:
    Re: subject, In-Reply-To and References."""
    reply = EmailMessage()
    reply["From"] = sender
    reply["To"] = Address(original.sender_name, addr_spec=original.sender)  # an Address is not parsed again
    reply["Subject"] = reply_subject(original.subject)
    if original.message_id:
        reply["In-Reply-To"] = original.message_id
        reply["References"] = " ".join([*(i for i in original.references if i != original.message_id), original.message_id])
    reply["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    reply["Date"] = format_datetime(datetime.now(timezone.utc))
    # RFC 3834: tells the other side's auto-responders not to answer us (and our own reader skips such mail).
    reply["Auto-Submitted"] = "auto-replied"
    body = f"{text}\n\n-- \n{signature}\n"
    if original.full_text:
        when = format_datetime(original.date) if original.date else ""
        quoted = "\n".join(f"> {line}" if line else ">" for line in original.full_text.split("\n"))
        body += f"\n{when}, {formataddr((original.sender_name, original.sender))}:\n{quoted}\n"
    reply.set_content(body)
    return reply


def build_followup(sender: str, to: str, thread: str | None, in_reply_to: str | None, text: str, signature: str) -> EmailMessage:
    """A letter in an existing thread (an operator's reply): threaded by In-Reply-To and References."""
    note = build_note(sender, to, "Re: ответ сотрудника поддержки MultyWorkemon", text, signature)
    del note["Auto-Submitted"]  # a person wrote it
    ids = [i for i in dict.fromkeys([thread, in_reply_to]) if i]
    if in_reply_to:
        note["In-Reply-To"] = in_reply_to
    if ids:
        note["References"] = " ".join(ids)
    return note


def build_note(sender: str, to: str, subject: str, text: str, signature: str) -> EmailMessage:
    """A new letter (the department mailing)."""
    note = EmailMessage()
    note["From"] = sender
    note["To"] = to
    note["Subject"] = clean(subject, MAX_SUBJECT_CHARS)
    note["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    note["Date"] = format_datetime(datetime.now(timezone.utc))
    note["Auto-Submitted"] = "auto-generated"
    note.set_content(f"{text}\n\n-- \n{signature}\n")
    return note
