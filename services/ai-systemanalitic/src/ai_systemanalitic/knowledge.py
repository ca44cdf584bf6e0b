"""The knowledge base in PostgreSQL: keeping documents and finding the best ones for a request.

Ranking (one SQL statement, `_SEARCH`): the request's words are stemmed with the `russian`
text-search configuration (Russian and English stemmers); each stem also stands for the base's
stems that look like it by trigrams (typos, word forms the stemmer keeps apart). A document
scores, for every word of the request, the best of: likeness of the stem x its rarity in the
base (BM25's idf) x `ts_rank` of the stem in the document, where a title weighs most, tags
next and the text least; the sum shrinks with the share of the request's words the document
lacks. A document is relevant only if it shares a word with the request that at most half the
documents have; documents below `min_score`, or far below the best one, are left out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from multyworkemon_common.database import CONNECTION_ERRORS, Database, DatabaseUnavailable

from .documents import Document, plain_text
from multyworkemon_common.links import link_key

# Only stems made of letters, digits and inner hyphens take part; that also makes quote_literal(stem)::tsquery safe.
_LEXEME = r"^[0-9a-zа-яё]+(-[0-9a-zа-яё]+)*$"
# ts_rank's weights of the text (D), the unused C, tags (B) and the title (A).
_FIELD_WEIGHTS = "ARRAY[0.25, 0.4, 0.5, 1.0]::real[]"
# Words that carry no topic in a request: the asking, not the subject (the stemmer's stop list
# already drops prepositions, pronouns and the like).
FILLER_WORDS = (
    "почему зачем нужно нужен нужна нужны надо хочу хотел хотела хотим подскажите пожалуйста прошу "
    "спасибо привет здравствуйте добрый коллеги помогите помощь можно вопрос работа работает "
    "please help need want could would hello thanks question"
)
# A stem this long or longer also matches stems at least this alike (кошелек/кошельк: 0.45).
FUZZY_MIN_LENGTH = 4
FUZZY_LIKENESS = 0.45
_LOCK = "knowledge_base"  # one writer at a time: replicas may load the folder at the same moment

_SEARCH = f"""
WITH asked AS (
    SELECT DISTINCT lexeme, knowledge_trigrams(lexeme) AS trigrams
    FROM unnest(tsvector_to_array(to_tsvector('russian', $1))) AS lexeme
    WHERE lexeme ~ '{_LEXEME}'
      AND lexeme <> ALL (tsvector_to_array(to_tsvector('russian', $5)))
),
base AS (SELECT count(*) AS n FROM knowledge_documents),
variants AS (
    SELECT a.lexeme AS asked, l.lexeme AS found, l.documents, 1.0::real AS likeness
    FROM asked a JOIN knowledge_lexemes l ON l.lexeme = a.lexeme
    UNION ALL
    -- Typos rarely hit the first letter; words that differ there are other words (списан/расписан).
    -- Likeness: shared trigrams over all trigrams of the two (pg_trgm's similarity); counted inline,
    -- since a SQL function here costs twice the whole search.
    SELECT a.lexeme, l.lexeme, l.documents, (s.shared::real / (cardinality(a.trigrams) + cardinality(l.trigrams) - s.shared))::real
    FROM asked a JOIN knowledge_lexemes l ON l.trigrams && a.trigrams
    CROSS JOIN LATERAL (SELECT count(*) AS shared FROM unnest(a.trigrams) AS t WHERE t = ANY (l.trigrams)) AS s
    WHERE length(a.lexeme) >= $3 AND l.lexeme <> a.lexeme AND left(l.lexeme, 1) = left(a.lexeme, 1)
      AND abs(length(l.lexeme) - length(a.lexeme)) <= 3
),
terms AS (
    SELECT v.asked, v.found, quote_literal(v.found)::tsquery AS query,
           v.likeness * ln(1 + (base.n - v.documents + 0.5) / (v.documents + 0.5)) AS weight,
           v.documents <= greatest(1, base.n / 2.0) AS distinctive
    FROM variants v, base
    WHERE v.likeness >= $4
),
parts AS (
    -- A word of the request counts once per document, by its best-scoring form.
    SELECT d.id, t.asked, max(t.weight * ts_rank({_FIELD_WEIGHTS}, d.search, t.query)) AS part,
           string_agg(quote_literal(t.found), ' | ') AS found, bool_or(t.distinctive) AS distinctive
    FROM terms t JOIN knowledge_documents d ON d.search @@ t.query
    GROUP BY d.id, t.asked
),
ranked AS (
    -- Coordination: a document loses in proportion to the request's words it lacks, against the
    -- document that has the most of them (so a long chatty request does not sink every score).
    -- A document that shares only words most documents have ("данные") is not relevant at all.
    SELECT id, sum(part) * count(*) / max(count(*)) OVER () AS score, string_agg(found, ' | ') AS found
    FROM parts
    GROUP BY id
    HAVING bool_or(distinctive)
    ORDER BY score DESC, id
    LIMIT $2
)
SELECT d.id, d.title, d.url, d.summary, r.score,
       ts_headline('russian', d.body, r.found::tsquery,
                   'MaxFragments=2, MaxWords=30, MinWords=12, StartSel="", StopSel="", FragmentDelimiter=" … "') AS fragments
FROM ranked r JOIN knowledge_documents d USING (id)
ORDER BY r.score DESC, d.id
"""

_REBUILD_LEXEMES = f"""
DELETE FROM knowledge_lexemes;
INSERT INTO knowledge_lexemes (lexeme, documents, trigrams)
SELECT word, ndoc, knowledge_trigrams(word) FROM ts_stat('SELECT search FROM knowledge_documents') WHERE word ~ '{_LEXEME}';
"""

_UPSERT = """
INSERT INTO knowledge_documents (url, title, tags, body, summary, links, origin, path, checksum)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (url) DO UPDATE SET title = EXCLUDED.title, tags = EXCLUDED.tags, body = EXCLUDED.body,
    summary = EXCLUDED.summary, links = EXCLUDED.links, origin = EXCLUDED.origin, path = EXCLUDED.path,
    checksum = EXCLUDED.checksum, updated_at = now()
WHERE (knowledge_documents.checksum, knowledge_documents.origin, knowledge_documents.path)
    IS DISTINCT FROM (EXCLUDED.checksum, EXCLUDED.origin, EXCLUDED.path)
RETURNING id, (xmax = 0) AS inserted
"""

_SUMMARY_FIELDS = "id, url, title, tags, origin, path, created_at, updated_at"


@dataclass
class Found:
    id: int
    title: str
    url: str
    score: float
    excerpt: str


@dataclass
class SyncReport:
    added: list[str]
    updated: list[str]
    removed: list[str]
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def __str__(self) -> str:
        return (f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
                f"{self.unchanged} unchanged")


class KnowledgeBase:
    def __init__(self, database: Database, *, max_sources: int, min_score: float, relative_score: float):
        self.database = database
        self.max_sources = max_sources
        self.min_score = min_score
        self.relative_score = relative_score

    async def search(self, text: str, limit: int | None = None) -> list[Found]:
        """The documents worth citing for this text, best first; empty when nothing is relevant."""
        # Only words matter: NUL characters and broken surrogates, which PostgreSQL cannot take, go.
        text = text[:20_000].replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
        rows = await self._run(
            "fetch", _SEARCH, text, limit or self.max_sources, FUZZY_MIN_LENGTH, FUZZY_LIKENESS, FILLER_WORDS,
        )
        if not rows:
            return []
        floor = max(self.min_score, rows[0]["score"] * self.relative_score)
        return [
            Found(row["id"], row["title"], row["url"], round(row["score"], 4), _excerpt(row["summary"], row["fragments"]))
            for row in rows
            if row["score"] >= floor
        ]

    async def known_links(self, links: list[str]) -> set[str]:
        """Which of these links the base holds: a document's URL, or a link a document's text gives."""
        if not links:
            return set()
        spellings = sorted({form for link in links for form in (link, link_key(link), link_key(link) + "/")})
        rows = await self._run(
            "fetch",
            """SELECT url AS link FROM knowledge_documents WHERE url = ANY($1::text[])
               UNION SELECT unnest(links) FROM knowledge_documents WHERE links && $1::text[]""",
            spellings,
        )
        held = {link_key(row["link"]) for row in rows}
        return {link for link in links if link_key(link) in held}

    # Keeping documents.
    async def sync_folder(self, documents: list[Document]) -> SyncReport:
        """Make the folder's documents the base's folder documents: add, update, remove; one transaction."""
        added: list[str] = []
        updated: list[str] = []
        async with self._transaction() as connection:
            for document in documents:
                row = await connection.fetchrow(_UPSERT, *_row(document, "folder"))
                if row is not None:
                    (added if row["inserted"] else updated).append(document.url)
            removed = await connection.fetch(
                "DELETE FROM knowledge_documents WHERE origin = 'folder' AND NOT url = ANY($1::text[]) RETURNING url",
                [d.url for d in documents],
            )
            report = SyncReport(added, updated, [r["url"] for r in removed], len(documents) - len(added) - len(updated))
            if report.changed:
                await connection.execute(_REBUILD_LEXEMES)
        return report

    async def put(self, document: Document) -> tuple[dict[str, Any], bool]:
        """Add a document, or replace the one with the same URL; answers (the document, created)."""
        async with self._transaction() as connection:
            row = await connection.fetchrow(_UPSERT, *_row(document, "api"))
            if row is not None:
                await connection.execute(_REBUILD_LEXEMES)
            stored = await connection.fetchrow(f"SELECT {_SUMMARY_FIELDS} FROM knowledge_documents WHERE url = $1", document.url)
        return _plain(stored), bool(row is not None and row["inserted"])

    async def delete(self, document_id: int) -> bool:
        async with self._transaction() as connection:
            deleted = await connection.fetchval("DELETE FROM knowledge_documents WHERE id = $1 RETURNING id", document_id)
            if deleted is not None:
                await connection.execute(_REBUILD_LEXEMES)
        return deleted is not None

    async def get(self, document_id: int) -> dict[str, Any] | None:
        row = await self._run(
            "fetchrow", f"SELECT {_SUMMARY_FIELDS}, summary, body, links FROM knowledge_documents WHERE id = $1", document_id,
        )
        return _plain(row) if row else None

    async def list(self, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        total = await self._run("fetchval", "SELECT count(*) FROM knowledge_documents")
        rows = await self._run(
            "fetch", f"SELECT {_SUMMARY_FIELDS} FROM knowledge_documents ORDER BY title, id LIMIT $1 OFFSET $2", limit, offset,
        )
        return total, [_plain(row) for row in rows]

    async def _run(self, method: str, query: str, *args):
        """One pool call; a lost database becomes a 503."""
        try:
            return await getattr(await self.database.pool(), method)(query, *args)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection in a transaction holding the writers' lock; a lost database becomes a 503."""
        try:
            async with (await self.database.pool()).acquire() as connection, connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK)
                yield connection
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc


def _row(document: Document, origin: str) -> tuple:
    return (document.url, document.title, list(document.tags), document.body, document.summary,
            list(document.links), origin, document.path, document.checksum)


def _plain(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    for key in ("created_at", "updated_at"):
        if item.get(key) is not None:
            item[key] = item[key].isoformat()
    return item


def _excerpt(summary: str, fragments: str | None, limit: int = 900) -> str:
    """What the model reads of a document: its summary, then the passages that match the request."""
    parts = [summary.strip()]
    passage = plain_text(fragments or "").replace("\n", " ")
    if passage and passage[:60] not in summary:
        parts.append(passage)
    text = " … ".join(part for part in parts if part)
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
