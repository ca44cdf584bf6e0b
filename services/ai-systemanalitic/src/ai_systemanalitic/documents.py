"""Knowledge-base documents, and reading them from a folder of Markdown files with front matter.

A file looks like this (title, url and tags in YAML front matter, then Markdown):

    ---
    title: Куб авторизаций кошельков
    url: https://wiki.example.internal/display/DATA/Wallet+Authorizations+Cube
    tags: [wallets, authorizations, cube]
    summary: optional; the first paragraph otherwise
    ---
    # Куб авторизаций кошельков
    ...
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multyworkemon_common.links import find_links

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_URL = re.compile(r"^https?://[^\s/]+\S*$", re.IGNORECASE)
SUMMARY_CHARS = 500
MAX_URL_BYTES = 2048  # the unique index on url holds at most about 2.7 kB per entry
MAX_TEXT_CHARS = 500_000  # PostgreSQL's tsvector holds at most 1 MB


class KnowledgeFolderError(Exception):
    """A folder that cannot be loaded as it is; nothing was changed."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Document:
    url: str
    title: str
    body: str
    tags: tuple[str, ...] = ()
    summary: str = ""
    path: str | None = None  # relative to the folder it came from
    links: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def build(cls, *, url: str, title: str, body: str, tags: Any = (), summary: str | None = None, path: str | None = None) -> "Document":
        """A document with its summary and links worked out; raises ValueError on a field it cannot use."""
        url, title, body = str(url or "").strip(), str(title or "").strip(), str(body or "").strip()
        tags, summary = _tags(tags), (str(summary).strip() if summary else first_paragraph(body))[:SUMMARY_CHARS]
        for name, value in (("url", url), ("title", title), ("text", body), ("tags", " ".join(tags)), ("summary", summary)):
            _storable(name, value)
        if not _URL.match(url):
            raise ValueError(f"url must be an http(s) address, got {url!r}" if url else "url is missing")
        if len(url.encode()) > MAX_URL_BYTES:
            raise ValueError(f"url is longer than {MAX_URL_BYTES} bytes")
        if not title:
            raise ValueError("title is missing (and the text has no heading to take it from)")
        if not body:
            raise ValueError("the document has no text")
        if len(body) > MAX_TEXT_CHARS:
            raise ValueError(f"the text is longer than {MAX_TEXT_CHARS} characters; split the document")
        return cls(
            url=url,
            title=title,
            body=body,
            tags=tags,
            summary=summary,
            path=path,
            links=tuple(link for link in find_links(body) if link != url),
        )

    @property
    def checksum(self) -> str:
        content = [self.url, self.title, list(self.tags), self.summary, self.body]
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def parse_markdown(text: str, path: str | None = None) -> Document:
    """One Markdown file with front matter; raises ValueError saying what is wrong."""
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise ValueError("no front matter: the file must start with a '---' block holding title, url and tags")
    try:
        meta = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"the front matter is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise ValueError("the front matter must be a mapping of title, url and tags")
    body = text[match.end():]
    title = meta.get("title") or _first_heading(body)
    return Document.build(url=meta.get("url"), title=title, body=body, tags=meta.get("tags") or (), summary=meta.get("summary"), path=path)


def read_folder(folder: Path) -> list[Document]:
    """Every `*.md` file under the folder (hidden ones aside), all or none: one bad file stops the load and names itself."""
    if not folder.is_dir():
        raise KnowledgeFolderError([f"{folder} is not a folder"])
    documents: list[Document] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in sorted(folder.rglob("*.md")):
        relative = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            continue  # hidden: a Kubernetes ConfigMap mount keeps a second copy of every file in ..<timestamp>/
        try:
            document = parse_markdown(path.read_text(encoding="utf-8"), relative)
        except (ValueError, UnicodeDecodeError, OSError) as exc:
            problems.append(f"{relative}: {exc}")
            continue
        if document.url in seen:
            problems.append(f"{relative}: url {document.url} is already used by {seen[document.url]}")
            continue
        seen[document.url] = relative
        documents.append(document)
    if problems:
        raise KnowledgeFolderError(problems)
    return documents


def first_paragraph(markdown: str) -> str:
    """The first run of prose: no headings, tables, code or list items; Markdown marks removed."""
    for block in re.split(r"\n\s*\n", markdown):
        lines = [line.strip() for line in block.strip().splitlines()]
        if not lines or lines[0].startswith(("#", "|", "```", "- ", "* ", ">", "---")) or re.match(r"\d+\.\s", lines[0]):
            continue
        return plain_text(" ".join(lines))
    return ""


def plain_text(markdown: str) -> str:
    """Markdown as a reader sees it: link words kept (with the address), emphasis and code marks dropped."""
    text = re.sub(r"!?\[([^\]]*)\]\(([^)\s]+)\)", r"\1 (\2)", markdown)
    text = re.sub(r"(\*\*|__|`)", "", text)
    text = re.sub(r"^#{1,6}\s+", "", text, flags=re.MULTILINE)
    return re.sub(r"[ \t]+", " ", text).strip()


def _first_heading(body: str) -> str:
    match = _HEADING.search(body)
    return match.group(1) if match else ""


def _storable(name: str, value: str) -> None:
    # PostgreSQL text holds neither NUL characters nor halves of surrogate pairs.
    if "\x00" in value:
        raise ValueError(f"{name} must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} is not valid Unicode text") from None


def _tags(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, (list, tuple)):
        raise ValueError("tags must be a list or a comma-separated string")
    tags: dict[str, None] = {}
    for tag in value:
        if str(tag).strip():
            tags.setdefault(str(tag).strip(), None)
    return tuple(tags)
