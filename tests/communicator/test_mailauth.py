"""Whose From is believed (issue 10.4): Authentication-Results of our own server (RFC 8601), topmost
only, or the internal relay named by the topmost Received header."""

from __future__ import annotations

from ai_communicator.mailauth import SenderTrust, parse_results
from ai_communicator.mailtext import read_head

# As Yandex writes it (each front names itself; no dmarc= result, dkim with header.i).
YANDEX = (
    "Authentication-Results: mail-nwsmtp-mxfront-production-main-60.iva.yp-c.yandex.net; spf=pass "
    "(mail-nwsmtp-mxfront-production-main-60.iva.yp-c.yandex.net: domain of example.com designates 2a00:1450:4864:20::530 "
    "as permitted sender, rule=[ip6:2a00:1450:4864::/56]) smtp.mail=anton@example.com; dkim=pass header.i=@example.com"
)
RECEIVED = "Received: from mail-ed1-x530.example.com (mail-ed1-x530.example.com [2a00:1450:4864:20::530])\r\n\tby mx.mw.test with ESMTPS id 1"
TRUST = SenderTrust.from_settings("*.yp-c.yandex.net, mx.mw.test", "10.1.0.0/16, 2001:db8::1")


def verified(*headers: str, sender: str = "anton@example.com") -> bool:
    raw = ("\r\n".join([*headers, f"From: Антон <{sender}>", "Subject: x"]) + "\r\n\r\nbody\r\n").encode()
    mail = read_head(raw)
    return TRUST.verified(mail.fields, mail.sender)


def test_results_are_parsed_as_rfc_8601_writes_them():
    authserv_id, outcomes = parse_results(
        'mx.mw.test 1; (a comment; with a semicolon) dkim=pass (good "sig") header.d=example.com header.s="sel;1";'
        " dmarc=fail (p=reject) header.from=example.com; spf=none"
    )
    assert authserv_id == "mx.mw.test"
    assert outcomes == [
        ("dkim", "pass", {"header.d": "example.com", "header.s": "sel;1"}),
        ("dmarc", "fail", {"header.from": "example.com"}),
        ("spf", "none", {}),
    ]
    assert parse_results("mx.mw.test; none") == ("mx.mw.test", [])


def test_our_servers_pass_authenticates_the_from():
    assert verified(YANDEX)
    assert verified("Authentication-Results: mx.mw.test; dmarc=pass header.from=example.com")
    assert verified("Authentication-Results: mx.mw.test; dkim=pass header.d=example.com")
    assert verified("Authentication-Results: mx.mw.test; dkim=pass header.d=example.com", sender="a@mail.example.com"), "relaxed alignment"


def test_a_forged_from_is_not_authenticated():
    assert not verified(), "no results at all"
    assert not verified("Authentication-Results: mx.mw.test; dkim=pass header.d=attacker.example"), "signed by another domain"
    assert not verified("Authentication-Results: mx.mw.test; dkim=pass header.d=com"), "a bare TLD aligns with nothing"
    assert not verified("Authentication-Results: mx.mw.test; dmarc=pass header.from=attacker.example")
    assert not verified("Authentication-Results: mx.mw.test; dkim=fail header.d=example.com; spf=pass smtp.mailfrom=example.com")
    assert not verified("Authentication-Results: mx.attacker.example; dmarc=pass header.from=example.com"), "not our server"
    assert not verified("Authentication-Results: evil-yp-c.yandex.net; dmarc=pass"), "only subdomains of the pattern"
    # The sender's own header below ours: only the topmost counts.
    assert not verified(
        "Authentication-Results: mx.mw.test; dkim=fail header.d=example.com; dmarc=fail header.from=example.com",
        RECEIVED,
        "Authentication-Results: mx.mw.test; dmarc=pass header.from=example.com",
    )
    assert not verified("Authentication-Results: mx.mw.test; dkim=pass header.d=example.com", sender="a@example.com, b@example.com")


def test_mail_through_a_trusted_relay_is_authenticated():
    assert verified("Received: from relay.corp.test (relay.corp.test [10.1.2.3]) by mx.mw.test with ESMTP id 1")
    assert verified("Received: from relay ([IPv6:2001:db8::1]) by mailstore with LMTP id 2")
    # Only the topmost Received counts, and only the address our server saw, not the sender's HELO.
    assert not verified(RECEIVED, "Received: from relay.corp.test (relay.corp.test [10.1.2.3]) by mx.mw.test")
    assert not verified("Received: from [10.1.2.3] (unknown [203.0.113.9]) by mx.mw.test with ESMTP")
    assert not verified("Received: from (x[10.1.2.3]) (unknown [203.0.113.9]) by mx.mw.test with ESMTP")
