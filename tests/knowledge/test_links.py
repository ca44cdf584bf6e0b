"""Finding links in an answer and taking out the ones not allowed."""

from __future__ import annotations

from multyworkemon_common.links import REMOVED_MARK, find_links, link_key, strip_links


def test_find_links_drops_sentence_punctuation():
    text = "См. https://wiki.example.internal/a. Или (https://bi.example.internal/b), www.example.org/c; ftp://files.example/d!"
    assert find_links(text) == [
        "https://wiki.example.internal/a", "https://bi.example.internal/b", "www.example.org/c", "ftp://files.example/d",
    ]


def test_link_key_ignores_fragment_trailing_slash_and_host_case():
    assert link_key("https://Wiki.Example.Internal/Page/#section") == link_key("https://wiki.example.internal/Page")
    assert link_key("https://wiki.example.internal/Page") != link_key("https://wiki.example.internal/page")


def test_strip_links_keeps_allowed_and_markdown_words():
    allowed = {"https://wiki.example.internal/a"}
    text = "[Куб](https://wiki.example.internal/a), [чужое](https://x.example/b) и https://x.example/c."
    stripped, removed = strip_links(text, lambda link: link in allowed)
    assert stripped == f"[Куб](https://wiki.example.internal/a), чужое {REMOVED_MARK} и {REMOVED_MARK}."
    assert removed == ["https://x.example/b", "https://x.example/c"]
    assert strip_links("без ссылок", lambda link: False) == ("без ссылок", [])
