"""Links in text: finding them, and taking out the ones the knowledge base does not hold."""

from __future__ import annotations

import re
from collections.abc import Callable

# A link is anything with a scheme (https://, ftp://, ...) or starting with www.; it ends at white
# space, quotes or brackets, and loses trailing punctuation that belongs to the sentence.
# (Letter classes rather than (?i): half the time on a page of text, which counts when loading 100,000.)
_LINK = re.compile(r"\b(?:[A-Za-z][A-Za-z0-9+.-]*://|[Ww][Ww][Ww]\.)[^\s<>\"'`()\[\]{}]+")
_MARKDOWN_LINK = re.compile(r"\[([^\]\n]*)\]\(\s*<?([^)\s>]+)>?\s*\)")
_TRAILING = ".,;:!?…»"

REMOVED_MARK = "(ссылка удалена: её нет в базе знаний)"


def find_links(text: str) -> list[str]:
    """Every link in the text, in order, without repeats."""
    found: dict[str, None] = {}
    if "://" not in text and "www." not in text.lower():
        return []  # most texts: no pass of the regex over them
    for match in _LINK.finditer(text):
        found.setdefault(match.group(0).rstrip(_TRAILING), None)
    return list(found)


def link_key(url: str) -> str:
    """What two spellings of one link share: no fragment, no trailing slash, case-insensitive scheme and host."""
    url = url.split("#", 1)[0].rstrip("/")
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

    text = _MARKDOWN_LINK.sub(markdown, text)
    # The second pass meets the Markdown targets that stayed, and keeps them: they are allowed.
    return _LINK.sub(bare, text), removed
