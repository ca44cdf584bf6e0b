"""The knowledge base in PostgreSQL: keeping documents and finding the best ones for a request.

Ranking (one SQL statement, `_SEARCH`): the request's words are stemmed with the `russian`
text-search configuration (Russian and English stemmers); each stem also stands for the base's
stems that look like it by trigrams (typos, word forms the stemmer keeps apart). A document
scores, for every word of the request, the best of: likeness of the stem x its rarity in the
base (BM25's idf) x `ts_rank` of the stem in the document, where a title weighs most, tags
next and the text least; the sum shrinks with the share of the request's words the document
lacks. A document is relevant only if it shares a word with the request that at most half the
documents have; documents below `min_score`, or far below the best one, are left out.

Only a bounded set of candidates is scored, so a search costs about the same at 100 and 100,000
documents: those with a word of the request in their title or tags, and those holding its rarest
words, each set read through its index and cut (CANDIDATES, RARE_WORDS_BUDGET; bench/knowledge.py
measures the cuts). With embeddings on, the nearest documents by vector are fused in (`fuse`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import asyncpg

from multyworkemon_common.database import CONNECTION_ERRORS, Database, DatabaseUnavailable
from multyworkemon_common.llm import LLMError
from multyworkemon_common.logging import get_logger

from multyworkemon_common.links import link_key

from .documents import Document, FolderScan, KnownFile, Progress, plain_text
from .semantic import Semantic

# Only stems made of letters, digits and inner hyphens take part; that also makes quote_literal(stem)::tsquery safe.
_LEXEME = r"^[0-9a-zа-яё]+(-[0-9a-zа-яё]+)*$"
# ts_rank's weights of the text (D), the unused C, tags (B) and the title (A). Measured against the
# quality test among 1,000 noise pages (89 %): a text weight of 0.2 gave 91 % there but put the codes
# reference above the wallet cube for "авторизации кошельков по кодам ответа" (test_answers); 0.1-0.15
# cost a sample row; a square root on the coordination factor below cost one too. Kept as it was.
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
log = get_logger("ai_systemanalitic.knowledge")
_LOCK = "knowledge_base"  # one writer at a time: replicas may load the folder at the same moment

_SEARCH = f"""
WITH asked AS (
    SELECT lexeme, trigrams, ARRAY(SELECT t FROM unnest(trigrams) AS t WHERE left(t, 1) <> ' ') AS inner_trigrams
    FROM (
        SELECT DISTINCT lexeme, knowledge_trigrams(lexeme) AS trigrams
        FROM unnest(tsvector_to_array(to_tsvector('russian', $1))) AS lexeme
        WHERE lexeme ~ '{_LEXEME}'
          AND lexeme <> ALL ($5::text[])
    ) AS words
),
base AS (SELECT documents AS n FROM knowledge_stats),
variants AS (
    SELECT a.lexeme AS asked, l.lexeme AS found, l.documents, 1.0::real AS likeness
    FROM asked a JOIN knowledge_lexemes l ON l.lexeme = a.lexeme
    UNION ALL
    -- Typos rarely hit the first letter; words that differ there are other words (списан/расписан).
    -- Likeness: shared trigrams over all trigrams of the two (pg_trgm's similarity); counted inline,
    -- since a SQL function here costs twice the whole search. Words of 4+ letters at least 0.45 alike
    -- share 3+ trigrams, so one at least besides the two that hold only the first letters ("  к",
    -- " ко"): asking the index for those alone loses no match and skips the many stems that share
    -- only a beginning (the bench's request: 492 pairs to count -> 32).
    SELECT a.lexeme, l.lexeme, l.documents, (s.shared::real / (cardinality(a.trigrams) + cardinality(l.trigrams) - s.shared))::real
    FROM asked a JOIN knowledge_lexemes l ON l.trigrams && a.inner_trigrams
    CROSS JOIN LATERAL (SELECT count(*) AS shared FROM unnest(a.trigrams) AS t WHERE t = ANY (l.trigrams)) AS s
    WHERE length(a.lexeme) >= $3 AND l.lexeme <> a.lexeme AND left(l.lexeme, 1) = left(a.lexeme, 1)
      AND abs(length(l.lexeme) - length(a.lexeme)) <= 3
),
terms AS (
    SELECT v.asked, v.found, quote_literal(v.found)::tsquery AS query, v.documents,
           v.likeness * ln(1 + (base.n - v.documents + 0.5) / (v.documents + 0.5)) AS weight,
           v.documents <= greatest(1, base.n / 2.0) AS distinctive
    FROM variants v, base
    WHERE v.likeness >= $4
),
-- Candidates, each set read through an index and cut to a fixed number, so that the ranking below
-- reads a few dozen documents whatever the size of the base: documents with a word of the request
-- in their title or tags (the small `head` vector and its index, ranked by those words alone) ...
titled AS (
    SELECT d.id FROM terms t JOIN knowledge_documents d ON d.head @@ t.query
    GROUP BY d.id ORDER BY sum(t.weight * ts_rank({_FIELD_WEIGHTS}, d.head, t.query)) DESC, d.id LIMIT $6
),
-- ... and documents holding the request's rarest words anywhere, as long as all of their documents
-- together stay within a fixed budget: a word that many documents hold cannot single one out.
rare AS (
    SELECT d.id FROM (
        SELECT query, weight, sum(documents) OVER (ORDER BY documents, found) AS reading FROM terms WHERE distinctive
    ) t JOIN knowledge_documents d ON d.search @@ t.query
    WHERE t.reading <= $7
    GROUP BY d.id ORDER BY sum(t.weight) DESC, d.id LIMIT $6
),
candidates AS MATERIALIZED (
    SELECT d.id, d.search FROM knowledge_documents d WHERE d.id IN (SELECT id FROM titled UNION SELECT id FROM rare)
),
parts AS (
    -- A word of the request counts once per document, by its best-scoring form.
    SELECT c.id, t.asked, max(t.weight * ts_rank({_FIELD_WEIGHTS}, c.search, t.query)) AS part,
           string_agg(quote_literal(t.found), ' | ') AS found, bool_or(t.distinctive) AS distinctive
    FROM candidates c JOIN terms t ON c.search @@ t.query
    GROUP BY c.id, t.asked
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
-- Passages are cut only from the documents that clear the floor (min_score, and a share of the
-- best score): ts_headline parses a whole body and was 40 % of the search's cost.
SELECT d.id, d.title, d.url, d.summary, r.score,
       ts_headline('russian', d.body, r.found::tsquery,
                   'MaxFragments=2, MaxWords=30, MinWords=12, StartSel="", StopSel="", FragmentDelimiter=" … "') AS fragments
FROM (SELECT *, max(score) OVER () AS best FROM ranked) r JOIN knowledge_documents d USING (id)
WHERE r.score >= greatest($8, r.best * $9)
ORDER BY r.score DESC, d.id
"""

_COLUMNS = "url, title, tags, body, summary, links, origin, path, checksum, source_hash"
# Writes a batch of rows from {source}; answers a row for each document added or changed (not for
# one already there as it is). The triggers of migration 003 keep the lexicon in step.
_UPSERT = f"""
INSERT INTO knowledge_documents ({_COLUMNS})
SELECT {_COLUMNS} FROM {{source}}
ON CONFLICT (url) DO UPDATE SET title = EXCLUDED.title, tags = EXCLUDED.tags, body = EXCLUDED.body,
    summary = EXCLUDED.summary, links = EXCLUDED.links, origin = EXCLUDED.origin, path = EXCLUDED.path,
    checksum = EXCLUDED.checksum, source_hash = EXCLUDED.source_hash, updated_at = now()
WHERE (knowledge_documents.checksum, knowledge_documents.origin, knowledge_documents.path)
    IS DISTINCT FROM (EXCLUDED.checksum, EXCLUDED.origin, EXCLUDED.path)
RETURNING url, (xmax = 0) AS inserted
"""
_UPSERT_ONE = _UPSERT.format(
    source="(VALUES ($1::text, $2::text, $3::text[], $4::text, $5::text, $6::text[], $7::text, $8::text, $9::text, $10::text)) "
           f"AS v({_COLUMNS})"
)
_INCOMING = "knowledge_incoming"
_SEARCH_INDEX = "CREATE INDEX knowledge_documents_search ON knowledge_documents USING gin (search)"  # as in migration 001
# A file saved again with the same content (say, other line ends) only gets its new hash.
_REHASH = f"""
UPDATE knowledge_documents d SET source_hash = i.source_hash FROM {_INCOMING} i
WHERE d.url = i.url AND (d.checksum, d.origin, d.path) IS NOT DISTINCT FROM (i.checksum, i.origin, i.path)
  AND d.source_hash IS DISTINCT FROM i.source_hash
"""
# What the next load compares of the files read (migration 004); files of documents no longer there are forgotten.
_RECORD_STATS = """
INSERT INTO knowledge_files (path, source_hash, size, mtime_ns)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
ON CONFLICT (path) DO UPDATE SET source_hash = EXCLUDED.source_hash, size = EXCLUDED.size, mtime_ns = EXCLUDED.mtime_ns
"""
_FORGET_FILES = """
DELETE FROM knowledge_files f WHERE NOT EXISTS (SELECT FROM knowledge_documents d WHERE d.origin = 'folder' AND d.path = f.path)
"""
BATCH = 1_000  # documents per write of a folder load (and per read of its files)
LOAD_TIMEOUT = 600.0  # seconds for one write of a load (DATABASE_TIMEOUT is for requests)
# After a load that changed this many documents the planner's statistics are renewed at once.
ANALYZE_AFTER = 1_000
CANDIDATES = 40  # documents each candidate set of the search gives to the ranking
# Hybrid ranking: documents each way gives to the fusion at least, and the fusion's constant (the
# usual 60 of Cormack et al.: a first place is worth little more than a second).
FUSED_DEPTH = 10
RRF_K = 60
RARE_WORDS_BUDGET = 2_000  # documents the search may read through the body index per request

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
    def __init__(self, database: Database, *, max_sources: int, min_score: float, relative_score: float,
                 semantic: Semantic | None = None):
        self.database = database
        self.max_sources = max_sources
        self.min_score = min_score
        self.relative_score = relative_score
        self.semantic = semantic  # embeddings on: hybrid ranking
        self._filler: list[str] | None = None

    async def search(self, text: str, limit: int | None = None) -> list[Found]:
        """The documents worth citing for this text, best first; empty when nothing is relevant."""
        # Only words matter: NUL characters and broken surrogates, which PostgreSQL cannot take, go.
        text = text[:20_000].replace("\x00", " ").encode("utf-8", "replace").decode("utf-8")
        limit = limit or self.max_sources
        if self.semantic is None:
            return await self._by_words(text, limit)
        # Hybrid: each way ranks its own candidates, a few more than asked; reciprocal rank fusion merges them.
        depth = max(2 * limit, FUSED_DEPTH)
        by_words, near = await asyncio.gather(self._by_words(text, depth), self.semantic.nearest(text, depth))
        return fuse(by_words, [Found(n.id, n.title, n.url, 0.0, _excerpt(n.summary, None)) for n in near], limit=limit)

    async def _by_words(self, text: str, limit: int) -> list[Found]:
        rows = await self._run(
            "fetch", _SEARCH, text, limit, FUZZY_MIN_LENGTH, FUZZY_LIKENESS, await self._filler_stems(), CANDIDATES,
            RARE_WORDS_BUDGET, self.min_score, self.relative_score,
        )
        return [Found(row["id"], row["title"], row["url"], round(row["score"], 4), _excerpt(row["summary"], row["fragments"])) for row in rows]

    async def _filler_stems(self) -> list[str]:
        """FILLER_WORDS as the base's stemmer stems them, asked once: stemming them in every search cost 10 % of it."""
        if self._filler is None:
            self._filler = await self._run("fetchval", "SELECT tsvector_to_array(to_tsvector('russian', $1))", FILLER_WORDS)
        return self._filler

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
    async def folder_files(self) -> dict[str, KnownFile]:
        """The files the base holds documents of, by path, with their size and mtime when the last
        load that read them found the bytes the document was made of (migration 004)."""
        rows = await self._run("fetch", """
            SELECT d.path, d.url, d.source_hash, f.size, f.mtime_ns
            FROM knowledge_documents d LEFT JOIN knowledge_files f ON f.path = d.path AND f.source_hash = d.source_hash
            WHERE d.origin = 'folder'
        """)
        return {row["path"]: KnownFile(row["url"], row["source_hash"], row["size"], row["mtime_ns"]) for row in rows}

    async def sync_folder(self, batches: AsyncIterable[list[Document]], scan: FolderScan) -> SyncReport:
        """Make the folder's documents the base's folder documents: add, update, remove; one transaction.

        `batches` gives the folder's documents to write (new or changed, or all); once they are
        exhausted, `scan` tells which files are in the base as they are (`kept`), which are gone and
        the files' sizes and mtimes to record. With nothing to write, no transaction is opened at
        all. An exception from `batches` (a bad file) undoes everything.
        """
        batches = aiter(batches)
        # No first batch: the folder was read to the end (so `scan` is complete) without a document to write.
        batch = await anext(batches, [])
        if not batch and not scan.stats and not scan.gone:
            return SyncReport([], [], [], len(scan.kept))
        added: list[str] = []
        updated: list[str] = []
        written = 0
        async with self._transaction() as connection:
            await connection.execute(f"CREATE TEMP TABLE {_INCOMING} ON COMMIT DROP AS SELECT {_COLUMNS} FROM knowledge_documents LIMIT 0")
            # Into an empty base, the text index is built once at the end: a third of the time of
            # growing it document by document (bench-kb). Readers wait for the load; they would find nothing anyway.
            first_load = not await connection.fetchval("SELECT documents FROM knowledge_stats")
            if first_load:
                await connection.execute("DROP INDEX knowledge_documents_search")
            while batch:
                await connection.copy_records_to_table(_INCOMING, records=[_row(d, "folder") for d in batch], timeout=LOAD_TIMEOUT)
                await connection.execute(_REHASH, timeout=LOAD_TIMEOUT)
                for row in await connection.fetch(_UPSERT.format(source=_INCOMING), timeout=LOAD_TIMEOUT):
                    (added if row["inserted"] else updated).append(row["url"])
                await connection.execute(f"TRUNCATE {_INCOMING}", timeout=LOAD_TIMEOUT)
                written += len(batch)
                batch = await anext(batches, [])
            if first_load:
                await connection.execute(f"SET LOCAL maintenance_work_mem = '256MB'; {_SEARCH_INDEX}", timeout=LOAD_TIMEOUT)
            removed = await connection.fetch(
                "DELETE FROM knowledge_documents WHERE origin = 'folder' AND url = ANY($1::text[]) RETURNING url",
                scan.gone, timeout=LOAD_TIMEOUT,
            )
            if scan.stats:
                await connection.execute(_RECORD_STATS, *map(list, zip(*scan.stats)), timeout=LOAD_TIMEOUT)
            await connection.execute(_FORGET_FILES, timeout=LOAD_TIMEOUT)
        report = SyncReport(added, updated, [r["url"] for r in removed], written + len(scan.kept) - len(added) - len(updated))
        if len(added) + len(updated) + len(removed) >= ANALYZE_AFTER:
            # The search's plan depends on them; autovacuum would renew them only later.
            await self._run("execute", "ANALYZE knowledge_documents, knowledge_lexemes", timeout=LOAD_TIMEOUT)
        return report

    async def put(self, document: Document) -> tuple[dict[str, Any], bool]:
        """Add a document, or replace the one with the same URL; answers (the document, created)."""
        async with self._transaction() as connection:
            row = await connection.fetchrow(_UPSERT_ONE, *_row(document, "api"))
            stored = await connection.fetchrow(f"SELECT {_SUMMARY_FIELDS} FROM knowledge_documents WHERE url = $1", document.url)
        if row is not None:
            await self.embed_changes()
        return _plain(stored), bool(row is not None and row["inserted"])

    async def setup(self) -> None:
        """With embeddings on, make the place for the vectors; without pgvector, search by words alone."""
        if self.semantic is None:
            return
        try:
            await self.semantic.setup()
        except asyncpg.PostgresError as exc:
            log.error("EMBEDDINGS_MODEL is set but the database cannot hold vectors (pgvector); searching by words alone",
                      error=f"{type(exc).__name__}: {exc}")
            await self.semantic.close()
            self.semantic = None

    async def close(self) -> None:
        if self.semantic is not None:
            await self.semantic.close()

    async def embed_changes(self, progress: Progress | None = None) -> None:
        """With embeddings on: embed the documents added or changed since the last time. A failing
        endpoint does not undo the change: those documents are found by their words until the next load."""
        if self.semantic is None:
            return
        try:
            await self.semantic.embed_missing(progress)
        except LLMError as exc:
            log.warning("documents not embedded; they are found by their words until the next load", error=str(exc))

    async def delete(self, document_id: int) -> bool:
        async with self._transaction() as connection:
            deleted = await connection.fetchval("DELETE FROM knowledge_documents WHERE id = $1 RETURNING id", document_id)
        return deleted is not None

    async def get(self, document_id: int) -> dict[str, Any] | None:
        row = await self._run(
            "fetchrow", f"SELECT {_SUMMARY_FIELDS}, summary, body, links FROM knowledge_documents WHERE id = $1", document_id,
        )
        return _plain(row) if row else None

    async def list(self, limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
        total = await self._run("fetchval", "SELECT documents FROM knowledge_stats")
        rows = await self._run(
            "fetch", f"SELECT {_SUMMARY_FIELDS} FROM knowledge_documents ORDER BY title, id LIMIT $1 OFFSET $2", limit, offset,
        )
        return total, [_plain(row) for row in rows]

    async def _run(self, method: str, query: str, *args, **options):
        """One pool call; a lost database becomes a 503."""
        try:
            return await getattr(await self.database.pool(), method)(query, *args, **options)
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


def fuse(*rankings: list[Found], limit: int) -> list[Found]:
    """Reciprocal rank fusion: a document scores the sum of 1 / (RRF_K + its rank) over the rankings
    that hold it. Ranks, not scores, are added: a word score and a cosine have no common scale."""
    fused: dict[int, Found] = {}
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, found in enumerate(ranking, start=1):
            fused.setdefault(found.id, found)  # the first ranking's excerpt: the passages matching the words
            scores[found.id] = scores.get(found.id, 0.0) + 1 / (RRF_K + rank)
    best = sorted(fused, key=lambda id_: -scores[id_])[:limit]
    return [replace(fused[id_], score=round(scores[id_], 5)) for id_ in best]


def _row(document: Document, origin: str) -> tuple:
    return (document.url, document.title, list(document.tags), document.body, document.summary,
            list(document.links), origin, document.path, document.checksum, document.source_hash)


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
