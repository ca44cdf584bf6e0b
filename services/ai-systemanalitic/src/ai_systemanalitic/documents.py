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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from multyworkemon_common.links import find_links

_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_URL = re.compile(r"^https?://[^\s/]+\S*$", re.IGNORECASE)
# libyaml's loader where PyYAML was built with it (its wheels are): ten times the pure-Python one.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
SUMMARY_CHARS = 500
MAX_URL_BYTES = 2048  # the unique index on url holds at most about 2.7 kB per entry
MAX_TEXT_CHARS = 500_000  # PostgreSQL's tsvector holds at most 1 MB
# Told (stage, done, total) while a long load goes on.
Progress = Callable[[str, int, int], None]


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
    source_hash: str | None = field(default=None, compare=False)  # of the file's bytes

    @classmethod
    def build(cls, *, url: str, title: str, body: str, tags: Any = (), summary: str | None = None, path: str | None = None,
              source_hash: str | None = None) -> "Document":
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
            source_hash=source_hash,
        )

    @property
    def checksum(self) -> str:
        content = [self.url, self.title, list(self.tags), self.summary, self.body]
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


def parse_markdown(text: str, path: str | None = None, source_hash: str | None = None) -> Document:
    """One Markdown file with front matter; raises ValueError saying what is wrong."""
    text = text.lstrip("\ufeff")
    match = _FRONT_MATTER.match(text)
    if not match:
        raise ValueError("no front matter: the file must start with a '---' block holding title, url and tags")
    try:
        meta = yaml.load(match.group(1), Loader=_YAML_LOADER) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"the front matter is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(meta, dict):
        raise ValueError("the front matter must be a mapping of title, url and tags")
    body = text[match.end():]
    title = meta.get("title") or _first_heading(body)
    return Document.build(url=meta.get("url"), title=title, body=body, tags=meta.get("tags") or (), summary=meta.get("summary"),
                          path=path, source_hash=source_hash)


class FolderScan:
    """Every `*.md` file under a folder (hidden ones aside), read in batches, all or none: `check`
    raises, naming every bad file, once all are read.

    `loaded` maps the path of a file already in the base to (its hash, its URL): a file whose bytes
    still have that hash is not parsed again (its URL goes to `kept`), which makes re-loading an
    unchanged folder cheap.
    """

    def __init__(self, folder: Path, loaded: Mapping[str, tuple[str, str]] | None = None):
        if not folder.is_dir():
            raise KnowledgeFolderError([f"{folder} is not a folder"])
        self.folder = folder
        self.loaded = loaded or {}
        # Hidden: a Kubernetes ConfigMap mount keeps a second copy of every file in ..<timestamp>/.
        self.paths = [p for p in sorted(folder.rglob("*.md")) if not any(part.startswith(".") for part in p.relative_to(folder).parts)]
        self.kept: list[str] = []
        self.problems: list[str] = []
        self._next = 0
        self._seen: dict[str, str] = {}  # URL -> the file that has it

    def read(self, count: int) -> list[Document]:
        """The next `count` files that are new or changed, parsed (fewer at the end, none when all are read)."""
        documents: list[Document] = []
        while len(documents) < count and self._next < len(self.paths):
            path = self.paths[self._next]
            self._next += 1
            relative = path.relative_to(self.folder).as_posix()
            try:
                raw = path.read_bytes()
                digest = hashlib.sha256(raw).hexdigest()
                known_hash, url = self.loaded.get(relative, (None, ""))
                document = None if known_hash == digest else parse_markdown(raw.decode("utf-8"), relative, digest)
            except (ValueError, UnicodeDecodeError, OSError) as exc:
                self.problems.append(f"{relative}: {exc}")
                continue
            url = document.url if document else url
            if url in self._seen:
                self.problems.append(f"{relative}: url {url} is already used by {self._seen[url]}")
                continue
            self._seen[url] = relative
            if document is None:
                self.kept.append(url)
            else:
                documents.append(document)
        return documents

    @property
    def done(self) -> int:
        return self._next

    def check(self) -> None:
        if self.problems:
            raise KnowledgeFolderError(self.problems)


def read_folder(folder: Path) -> list[Document]:
    """Every document of the folder, parsed; raises KnowledgeFolderError naming every bad file."""
    scan = FolderScan(folder)
    documents = scan.read(len(scan.paths))
    scan.check()
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
