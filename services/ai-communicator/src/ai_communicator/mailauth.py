"""Whether a mail's From is its real sender: our own mail server's Authentication-Results
(RFC 8601), or the internal relay it came through.

Anyone can write any From, and any Authentication-Results too. What the sender cannot write is
what the receiving server puts on top of the mail, above everything the sender sent: so only the
topmost Authentication-Results header counts, and only when its authserv-id is one configured in
MAIL_AUTHSERV_ID; only the topmost Received header names the relay the mail came from.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# One "property=value" of a result: method=result, reason=..., header.d=..., smtp.mailfrom=...
_PAIR = re.compile(r'([^\s=";]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s";]*)')
# Received: from <helo or name> (<rdns> [<ip>] ...): the parenthesised part is what our server saw.
_RECEIVED_FROM = re.compile(r"^\s*from\s+\S+\s+\(([^)]*)\)", re.IGNORECASE)
_IP_LITERAL = re.compile(r"\[(?:ipv6:)?([0-9a-f:.]+)\]", re.IGNORECASE)


@dataclass(frozen=True)
class SenderTrust:
    authserv_ids: tuple[str, ...]  # exact ids, or "*.suffix" for a server farm (Yandex names each front)
    relays: tuple[Network, ...]

    @classmethod
    def from_settings(cls, authserv_id: str, trusted_relays: str) -> SenderTrust:
        ids = tuple(part.strip().lower() for part in authserv_id.split(",") if part.strip())
        relays = tuple(ipaddress.ip_network(part.strip(), strict=False) for part in trusted_relays.split(",") if part.strip())
        return cls(ids, relays)

    def verified(self, fields: list[tuple[str, str]], sender: str) -> bool:
        """`fields`: the mail's header fields, (lower-case name, unfolded value), top first."""
        if not sender:
            return False
        received = next((value for name, value in fields if name == "received"), None)
        if received is not None and self._from_relay(received):
            return True
        results = next((value for name, value in fields if name == "authentication-results"), None)
        if results is None:
            return False
        authserv_id, outcomes = parse_results(results)
        return self._ours(authserv_id) and any(_authenticates(method, result, props, sender) for method, result, props in outcomes)

    def _ours(self, authserv_id: str) -> bool:
        return any(
            authserv_id.endswith(trusted[1:]) if trusted.startswith("*.") else authserv_id == trusted
            for trusted in self.authserv_ids
        )

    def _from_relay(self, received: str) -> bool:
        match = _RECEIVED_FROM.match(received)
        address = _IP_LITERAL.search(match.group(1)) if match else None
        if address is None or not self.relays:
            return False
        try:
            ip = ipaddress.ip_address(address.group(1))
        except ValueError:
            return False
        return any(ip in network for network in self.relays)


def parse_results(value: str) -> tuple[str, list[tuple[str, str, dict[str, str]]]]:
    """RFC 8601: (authserv-id, [(method, result, {property: value})]), names in lower case."""
    segments = _segments(value)
    head = segments[0].split() if segments else []
    outcomes = []
    for segment in segments[1:]:
        pairs = [(key.lower(), _unquote(val)) for key, val in _PAIR.findall(segment)]
        if not pairs:
            continue  # "none": nothing was checked
        method, result = pairs[0]
        outcomes.append((method.split("/")[0], result.lower(), dict(pairs[1:])))
    return (_unquote(head[0]).lower() if head else ""), outcomes


def _segments(value: str) -> list[str]:
    """Split at ";" outside quoted strings, dropping (nested) comments; linear in the value."""
    segments, current, depth, quoted, escaped = [], [], 0, False, False
    for char in value:
        if escaped:
            escaped = False
            if depth == 0:
                current.append(char)
        elif char == "\\" and (quoted or depth):
            escaped = True
            if depth == 0:
                current.append(char)
        elif quoted:
            current.append(char)
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif depth:
            continue
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            segments.append("".join(current))
            current = []
        else:
            current.append(char)
    segments.append("".join(current))
    return [segment.strip() for segment in segments]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def _authenticates(method: str, result: str, props: dict[str, str], sender: str) -> bool:
    """dmarc=pass for the From domain, or dkim=pass for a domain aligned with it."""
    if result != "pass":
        return False
    domain = sender.rpartition("@")[2].lower()
    if method == "dmarc":
        checked = props.get("header.from", domain).lower()
        return checked == domain
    if method == "dkim":
        signers = [props.get("header.d", ""), props.get("header.i", "").rpartition("@")[2]]
        return any(_aligned(signer.lower(), domain) for signer in signers if signer)
    return False


def _aligned(signer: str, domain: str) -> bool:
    # The signer's domain or a parent of it (relaxed alignment, RFC 7489 3.1.1), never a bare TLD.
    return "." in signer and (domain == signer or domain.endswith("." + signer))
