"""Reading real MIME: charsets, HTML-only mail, encoded headers, quoted history and signatures."""

from __future__ import annotations

from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

from ai_communicator.mailtext import build_reply, parse_mail, reply_subject, strip_reply


def test_html_only_koi8r_mail_with_encoded_headers():
    html = MIMEText(
        "<html><head><style>p{color:red}</style></head><body><p>Добрый день!</p>"
        "<p>Нужен&nbsp;доступ к витрине <b>платежей</b>.</p><blockquote>старое письмо</blockquote></body></html>",
        "html", "koi8-r",
    )
    html["From"] = f"{Header('Ирина Соколова', 'koi8-r').encode()} <Sokolova@Example.com>"
    html["Subject"] = Header("Доступ к витрине", "koi8-r").encode()
    html["Message-ID"] = "<abc@example.com>"
    raw = html.as_bytes()
    assert b"koi8-r" in raw.lower() and "Доступ".encode() not in raw, "really koi8-r and encoded"
    mail = parse_mail(raw)
    assert mail.subject == "Доступ к витрине"
    assert mail.sender == "sokolova@example.com" and mail.sender_name == "Ирина Соколова"
    assert mail.text == "Добрый день!\n\nНужен доступ к витрине платежей."
    assert "старое письмо" not in mail.text and "color" not in mail.text
    assert not mail.automatic


def test_multipart_alternative_prefers_the_text_part_and_skips_attachments():
    message = MIMEMultipart("mixed")
    body = MIMEMultipart("alternative")
    body.attach(MIMEText("Нужна выгрузка за октябрь", "plain", "windows-1251"))
    body.attach(MIMEText("<p>Нужна выгрузка за <i>октябрь</i></p>", "html", "utf-8"))
    message.attach(body)
    attachment = MIMEText("id;amount\n1;100", "csv", "utf-8")
    attachment.add_header("Content-Disposition", "attachment", filename="data.csv")
    message.attach(attachment)
    message["From"] = "petrovaelena@example.com"
    message["Subject"] = "Выгрузка"
    assert parse_mail(message.as_bytes()).text == "Нужна выгрузка за октябрь"


def test_quoted_history_and_signatures_are_cut():
    assert strip_reply("Да, за октябрь.\n\nОт: MultyWorkemon <helpdesk@mw.test>\nОтправлено: 22 ноября\n> вопрос") == "Да, за октябрь."
    assert strip_reply("Yes, October.\n\nOn Sun, 22 Nov 2026 at 10:15, MultyWorkemon <helpdesk@mw.test> wrote:\n> question") == "Yes, October."
    assert strip_reply("Статусы нужны все\n-- \nАнтон\n+7 900 000-00-00") == "Статусы нужны все"
    assert strip_reply("Нужно по дням\n\nОтправлено с iPhone") == "Нужно по дням"
    assert strip_reply("Нужно по дням\n\nС уважением,\nАнтон") == "Нужно по дням"
    assert strip_reply("> только цитата") == "> только цитата", "nothing new: keep what there is rather than nothing"


def test_automatic_mail_is_recognised():
    for header, value in (("Auto-Submitted", "auto-replied"), ("Precedence", "bulk"), ("X-Autoreply", "yes")):
        message = MIMEText("Я в отпуске")
        message["From"] = "someone@example.com"
        message[header] = value
        assert parse_mail(message.as_bytes()).automatic
    bounce = MIMEText("Delivery failed")
    bounce["From"] = "MAILER-DAEMON@mx.example.com"
    assert parse_mail(bounce.as_bytes()).automatic


def test_reply_threads_and_keeps_one_re():
    assert reply_subject("Re: Выгрузка") == "Re: Выгрузка" and reply_subject("RE[2]: X") == "RE[2]: X"
    assert reply_subject("Выгрузка") == "Re: Выгрузка" and reply_subject("") == "Re: (без темы)"
    original = MIMEText("Нужна выгрузка", "plain", "utf-8")
    original["From"] = "Антон <a@example.com>"
    original["Reply-To"] = "team@example.com"
    original["Subject"] = "Выгрузка"
    original["Message-ID"] = "<2@example.com>"
    original["References"] = "<1@example.com>"
    reply = build_reply(parse_mail(original.as_bytes()), "Ответ", "helpdesk@mw.test", "подпись")
    assert reply["To"] == "team@example.com" and reply["In-Reply-To"] == "<2@example.com>"
    assert reply["References"] == "<1@example.com> <2@example.com>" and reply["Message-ID"].endswith("@mw.test>")
    assert "> Нужна выгрузка" in reply.get_content()
