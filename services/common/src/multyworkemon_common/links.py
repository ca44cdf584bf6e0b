"""Links in text: finding them, and taking out the ones the knowledge base does not hold.

Whatever a user sees passes through here (the analyst's answers, the guesser's questions), so a
link is anything a mail client, a chat app or a person would follow: a scheme (also written with
backslashes, `https:/\\`), `//host`, `www.`, or a bare domain (`evil.example/sso-login`).
Invisible characters that split a link from a filter's view (zero-width spaces) are dropped first.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Top-level domains a bare host name must end in to count as a link ("file.csv" is not one).
_TLDS = (
    "com|net|org|info|biz|io|co|me|app|dev|ai|xyz|online|site|tech|cloud|top|club|shop|store|pro|space|website|link|"
    "live|click|today|news|blog|page|gov|edu|mil|int|ru|su|рф|by|kz|ua|uk|de|fr|it|es|nl|pl|cz|at|be|ch|se|no|fi|pt|gr|"
    "tr|il|us|eu|cn|jp|in|br|ca|au|example|test|invalid|local|localhost|internal|corp|lan|xn--[a-z0-9-]+"
)
# A link ends at white space, quotes or brackets, and loses trailing punctuation of the sentence.
_TAIL = r"[^\s<>\"'`()\[\]{}]"
_LINK = re.compile(
    rf"(?i)(?:\b[a-z][a-z0-9+.-]*:[/\\]+|(?<![\w/\\])//(?=\w)|\bwww\.){_TAIL}+"
    rf"|(?<![@\w.\-/\\])(?:[\w-]+\.)+(?:{_TLDS})\b(?![.\w-]*@)(?:[/:?#]{_TAIL}*)?"
)
_INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?\s*\)")
_TRAILING = ".,;:!?…»"

REMOVED_MARK = "(ссылка удалена: её нет в базе знаний)"


def visible(text: str) -> str:
    """The text without the invisible characters that can hide a link from a filter."""
    return _INVISIBLE.sub("", text)


def find_links(text: str) -> list[str]:
    """Every link in the text, in order, without repeats."""
    found: dict[str, None] = {}
    for match in _LINK.finditer(visible(text)):
        found.setdefault(match.group(0).rstrip(_TRAILING), None)
    return list(found)


def link_key(url: str) -> str:
    """What two spellings of one link share: no fragment, no trailing slash, case-insensitive scheme and host."""
    url = url.split("#", 1)[0].replace("\\", "/").rstrip("/")
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url.lower()
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{host.lower()}{slash}{path}"


def strip_links(text: str, allowed: Callable[[str], bool]) -> tuple[str, list[str]]:
    """The text without the links `allowed` rejects, and those links.

    A Markdown link keeps its words and loses its target; a bare link is replaced by a short note,
    so the reader sees that something was taken out rather than a sentence with a hole in it.
    """
    removed: list[str] = []

    def markdown(match: re.Match) -> str:
        words, target = match.group(1), match.group(2).rstrip(_TRAILING)
        if not _LINK.fullmatch(target) or allowed(target):
            return match.group(0)
        removed.append(target)
        return f"{words} {REMOVED_MARK}" if words.strip() else REMOVED_MARK

    def bare(match: re.Match) -> str:
        link = match.group(0)
        kept = link.rstrip(_TRAILING)
        if allowed(kept):
            return link
        removed.append(kept)
        return REMOVED_MARK + link[len(kept):]

    text = _MARKDOWN_LINK.sub(markdown, visible(text))
    # The second pass meets the Markdown targets that stayed, and keeps them: they are allowed.
    return _LINK.sub(bare, text), removed


def without_links(text: str) -> str:
    """The text with every link taken out (for texts that never need one)."""
    return strip_links(text, lambda _link: False)[0]
