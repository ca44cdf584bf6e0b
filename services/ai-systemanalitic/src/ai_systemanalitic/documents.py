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
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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
RACY_NS = 2_000_000_000  # FolderScan: FAT keeps mtimes to 2 s, ext3 and HFS+ to 1 s, most others to the nanosecond
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


class KnownFile(NamedTuple):
    """A file the base holds a document of, as the last load that read it left it."""

    url: str
    source_hash: str | None  # of the file's bytes
    # The file's size and mtime when its bytes had that hash; None: unknown, the file is read again.
    size: int | None = None
    mtime_ns: int | None = None


class FileStat(NamedTuple):
    """A file read by this load, as the next one will compare it (the columns of knowledge_files)."""

    path: str
    source_hash: str
    size: int
    mtime_ns: int


class FolderScan:
    """Every `*.md` file under a folder (hidden ones aside), read in batches, all or none: `check`
    raises, naming every bad file, once all are read.

    `known` maps the path of a file already in the base to what the base knows of it. A file whose
    size and mtime are as known is taken as unchanged without being read (git's index does the
    same), so re-loading an unchanged folder costs a `stat` per file; any other file is read, and
    one whose bytes still hash as known is not parsed either. Either way its URL goes to `kept`.
    Once all are read, `gone` holds the URLs of known files no longer there and `stats` the files
    whose size and mtime the base should record for the next load.

    A file modified twice within the file system's timestamp granularity keeps its mtime (and
    maybe its size): git's "racy clean" problem. So a stat is recorded only when the mtime is older
    than the start of this load by RACY_NS; a newer file is read again at the next load.
    """

    def __init__(self, folder: Path, known: Mapping[str, KnownFile] | None = None):
        if not folder.is_dir():
            raise KnowledgeFolderError([f"{folder} is not a folder"])
        self.folder = folder
        self.known = known or {}
        self.started_ns = time.time_ns()
        self.paths = _markdown_files(folder)
        self.kept: list[str] = []
        self.stats: list[FileStat] = []
        self.problems: list[str] = []
        self._next = 0
        self._seen: dict[str, str] = {}  # URL -> the file that has it

    def read(self, count: int) -> list[Document]:
        """The next `count` files that are new or changed, parsed (fewer at the end, none when all are read)."""
        documents: list[Document] = []
        while len(documents) < count and self._next < len(self.paths):
            relative = self.paths[self._next]
            self._next += 1
            known = self.known.get(relative)
            try:
                document, url = self._read(relative, known)
            except (ValueError, UnicodeDecodeError, OSError) as exc:
                self.problems.append(f"{relative}: {exc}")
                continue
            if url in self._seen:
                self.problems.append(f"{relative}: url {url} is already used by {self._seen[url]}")
                continue
            self._seen[url] = relative
            if document is None:
                self.kept.append(url)
            else:
                documents.append(document)
        return documents

    def _read(self, relative: str, known: KnownFile | None) -> tuple[Document | None, str]:
        """(the file's document, its URL); no document when the base holds the file as it is."""
        path = os.path.join(self.folder, relative)
        # Taken before the bytes are read: a change in between makes the next load read it again.
        stat = os.stat(path)
        if known is not None and (known.size, known.mtime_ns) == (stat.st_size, stat.st_mtime_ns):
            return None, known.url
        with open(path, "rb") as file:
            raw = file.read()
        digest = hashlib.sha256(raw).hexdigest()
        if stat.st_mtime_ns < self.started_ns - RACY_NS:
            self.stats.append(FileStat(relative, digest, stat.st_size, stat.st_mtime_ns))
        if known is not None and known.source_hash == digest:
            return None, known.url
        document = parse_markdown(raw.decode("utf-8"), relative, digest)
        return document, document.url

    @property
    def done(self) -> int:
        return self._next

    @property
    def gone(self) -> list[str]:
        """Once all are read: the URLs of the known files that are no longer in the folder (or hold another URL now)."""
        return sorted({known.url for known in self.known.values()} - self._seen.keys())

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


def _markdown_files(folder: Path) -> list[str]:
    """The paths of the folder's `*.md` files, relative to it, in order; hidden files and folders left out
    (a Kubernetes ConfigMap mount keeps a second copy of every file in ..<timestamp>/)."""
    found: list[str] = []
    for parent, folders, names in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        base = Path(parent).relative_to(folder).as_posix()
        prefix = "" if base == "." else base + "/"  # strings, not a Path per file: a third of the time at 100,000
        found += [prefix + name for name in names if name.endswith(".md") and not name.startswith(".")]
    return sorted(found)


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
