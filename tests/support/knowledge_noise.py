"""Synthetic knowledge-base pages: noise around the sample set, for the quality test and `make bench-kb`.

A page's text is 300 words: 60 drawn at random from the sample documents' vocabulary (each distinct
word as likely as any other), so every topic word of the samples turns up in noise pages too (a
word form in about 4 % of them, a stem with its forms in up to 20 %), the rest from 5,000 made-up
words shared by all pages (the base's other subjects, a few common, most rare). Its title and tags
are words of its own that no other page has (made-up names and a code: what makes a real base's
lexicon grow with its size): a page about something else that happens to use the same words.
Deterministic for a seed.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

_WORD = re.compile(r"[A-Za-zА-Яа-яЁё][A-Za-zА-Яа-яЁё0-9-]*")
# Made-up words start with letters no request word here starts with, so typo matching leaves them alone.
_FIRST = "zx"
_SYLLABLES = "zo xa qu ju vy ze xo qi jy zu xe qa vo zy xi".split()
NOISE_URL = "https://wiki.example.internal/display/NOISE/"


def vocabulary(folder: Path) -> list[str]:
    """The distinct words of the sample pages' text (front matter aside)."""
    words: set[str] = set()
    for path in sorted(folder.glob("*.md")):
        text = path.read_text(encoding="utf-8").split("\n---", 1)[-1]
        words.update(word.lower() for word in _WORD.findall(text) if len(word) > 1)
    return sorted(words)


def pages(folder: Path, count: int, seed: int = 13, topic_words: int = 60, other_words: int = 240) -> Iterator[tuple[str, str]]:
    """`count` noise pages as (file name, Markdown with front matter)."""
    rng = random.Random(seed)
    words = vocabulary(folder)
    others = [_made_up(rng) for _ in range(5000)]
    weights = [1 / (rank + 10) for rank in range(len(others))]  # Zipf-like: a few common, most rare
    for n in range(count):
        own = [_made_up(rng) for _ in range(3)] + [f"zkb{seed}x{n}"]
        title = f"{own[0].capitalize()} {own[1]}: заметка"
        tags = ", ".join(own[1:])
        body = rng.choices(words, k=topic_words) + rng.choices(others, weights, k=other_words) + own
        rng.shuffle(body)
        lines = [" ".join(body[i:i + 15]) + "." for i in range(0, len(body), 15)]
        text = "\n\n".join(" ".join(lines[i:i + 4]) for i in range(0, len(lines), 4))
        yield f"noise-{n:06d}.md", f'---\ntitle: "{title}"\nurl: {NOISE_URL}{n}\ntags: [{tags}]\n---\n{text}\n'


def _made_up(rng: random.Random) -> str:
    return rng.choice(_FIRST) + "".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3)))


def write_pages(source: Path, target: Path, count: int, seed: int = 13) -> None:
    """The sample pages plus `count` noise pages in `target` (kept if already there)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in source.glob("*.md"):
        (target / path.name).write_bytes(path.read_bytes())
    for name, text in pages(source, count, seed):
        (target / name).write_text(text, encoding="utf-8")
