"""Semantic retrieval: each document's embedding vector in pgvector, the nearest ones found beside the words.

On when `EMBEDDINGS_MODEL` is set (multyworkemon_common.llm: EmbeddingsSettings, build_embeddings). The vectors live in
`knowledge_embeddings`, made here rather than in a migration because the `vector` extension is
needed only then (and not every PostgreSQL has it; the embedded one ships pgvector 0.6.2). A vector
is kept with the document's checksum and the model's name, so a load embeds only the documents
that are new or changed, and a change of model embeds them all again. The index is HNSW over
cosine distance, one per model (a partial index on the vectors cast to the model's length: the
column itself holds any length).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from multyworkemon_common.database import CONNECTION_ERRORS, Database, DatabaseUnavailable
from multyworkemon_common.llm import Embeddings, LLMError
from multyworkemon_common.logging import get_logger

from .documents import Progress

log = get_logger("ai_systemanalitic.semantic")

EMBEDDED_CHARS = 2_000  # of a document (title, tags, then its text) and of a request: the models' limits are in tokens
TIMEOUT = 600.0  # seconds for one statement while embedding (DATABASE_TIMEOUT is for requests)
ANALYZE_AFTER = 1_000  # embedded documents after which the planner's statistics are renewed at once
_LOCK = "knowledge_embeddings"  # one replica embeds at a time; the others leave it to it

_SETUP = """
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS knowledge_embeddings (
    document_id bigint NOT NULL REFERENCES knowledge_documents (id) ON DELETE CASCADE,
    model       text NOT NULL,      -- Embeddings.name: the model, and the length asked for
    checksum    text NOT NULL,      -- the document's when it was embedded
    embedding   vector NOT NULL,
    PRIMARY KEY (document_id, model)
);
"""
_MISSING = """
SELECT d.id FROM knowledge_documents d
WHERE NOT EXISTS (SELECT FROM knowledge_embeddings e WHERE e.document_id = d.id AND e.model = $1 AND e.checksum = d.checksum)
ORDER BY d.id
"""
_TEXTS = """
SELECT id, checksum, left(title || E'\\n' || array_to_string(tags, ', ') || E'\\n' || body, $2) AS text
FROM knowledge_documents WHERE id = ANY($1::bigint[]) ORDER BY id
"""
# A document deleted meanwhile is skipped; the vector goes with the text of the checksum it was made from.
_STORE = """
INSERT INTO knowledge_embeddings (document_id, model, checksum, embedding)
SELECT $1, $2, $3, $4::text::vector WHERE EXISTS (SELECT FROM knowledge_documents WHERE id = $1)
ON CONFLICT (document_id, model) DO UPDATE SET checksum = EXCLUDED.checksum, embedding = EXCLUDED.embedding
"""


@dataclass
class Near:
    id: int
    title: str
    url: str
    summary: str
    similarity: float


class Semantic:
    def __init__(self, database: Database, embeddings: Embeddings, *, min_similarity: float):
        self.database = database
        self.embeddings = embeddings
        self.min_similarity = min_similarity
        # The model's name as an SQL literal: the partial index's predicate and the query's must be the same text.
        self._model = "'" + embeddings.name.replace("'", "''") + "'"
        self.index = "knowledge_embeddings_" + hashlib.sha256(embeddings.name.encode()).hexdigest()[:12]

    async def setup(self) -> None:
        """Create what the vectors need; raises when the server has no pgvector (the search then stays lexical)."""
        async with (await self.database.pool()).acquire() as connection, connection.transaction():
            # Replicas starting together would collide in the catalog.
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", _LOCK)
            await connection.execute(_SETUP)

    async def embed_missing(self, progress: Progress | None = None) -> int:
        """Embed the documents that are new or changed since they were embedded; answers how many.

        In batches of EMBEDDINGS_BATCH_SIZE, each call retried (Embeddings.documents). A replica
        that finds another one at it leaves the work to it. What is stored stays stored when a call
        finally fails: the next load goes on from there.
        """
        async with (await self.database.pool()).acquire() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", _LOCK):
                return 0
            try:
                # Vectors of another model (or length) are not comparable with this one's.
                await connection.execute(f"DELETE FROM knowledge_embeddings WHERE model <> {self._model}", timeout=TIMEOUT)
                ids = [row["id"] for row in await connection.fetch(_MISSING, self.embeddings.name, timeout=TIMEOUT)]
                size = self.embeddings.batch_size
                for start in range(0, len(ids), size):
                    rows = await connection.fetch(_TEXTS, ids[start:start + size], EMBEDDED_CHARS, timeout=TIMEOUT)
                    vectors = await self.embeddings.documents([row["text"] for row in rows])
                    await connection.executemany(
                        _STORE, [(row["id"], self.embeddings.name, row["checksum"], _literal(v)) for row, v in zip(rows, vectors)],
                        timeout=TIMEOUT,
                    )
                    if progress:
                        progress("embedding documents", start + len(rows), len(ids))
                await self._index_vectors(connection)
                if len(ids) >= ANALYZE_AFTER:
                    await connection.execute("ANALYZE knowledge_embeddings", timeout=TIMEOUT)
            finally:
                await connection.execute("SELECT pg_advisory_unlock(hashtext($1))", _LOCK)
        if ids:
            log.info("knowledge base embedded", labels={"documents": str(len(ids)), "model": self.embeddings.name})
        return len(ids)

    async def _index_vectors(self, connection: asyncpg.Connection) -> None:
        # Built once the first vectors are in (faster than growing it from empty); kept up to date after.
        length = await connection.fetchval(f"SELECT vector_dims(embedding) FROM knowledge_embeddings WHERE model = {self._model} LIMIT 1")
        if length is not None:
            await connection.execute(
                f"CREATE INDEX IF NOT EXISTS {self.index} ON knowledge_embeddings "
                f"USING hnsw ((embedding::vector({length:d})) vector_cosine_ops) WHERE model = {self._model}",
                timeout=TIMEOUT,
            )

    async def nearest(self, text: str, limit: int) -> list[Near]:
        """The documents whose vectors are nearest the text's, at least min_similarity alike; empty when
        the embeddings endpoint fails (the search goes on with words alone, and says so in the log)."""
        try:
            vector = await self.embeddings.query(text[:EMBEDDED_CHARS])
        except LLMError as exc:
            log.warning("embeddings unavailable; searching by words alone", error=str(exc))
            return []
        try:
            rows = await (await self.database.pool()).fetch(self.nearest_query(len(vector)), _literal(vector), limit)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(exc) from exc
        except asyncpg.DataException as exc:  # a vector of another length than the stored ones: the model changed
            log.warning("stored vectors do not match the model's; searching by words alone", error=str(exc))
            return []
        return [Near(r["id"], r["title"], r["url"], r["summary"], r["similarity"]) for r in rows if r["similarity"] >= self.min_similarity]

    def nearest_query(self, length: int) -> str:
        """The query of `nearest` ($1 the vector, $2 the limit), written as the index is, so that it uses it."""
        distance = f"embedding::vector({length:d}) <=> $1::text::vector({length:d})"
        # The nearest first, from the index alone; joined to the documents after (a join around the
        # ordered scan made the planner sort every vector instead: tests/knowledge/test_semantic.py).
        return f"""
            SELECT d.id, d.title, d.url, d.summary, 1 - n.distance AS similarity
            FROM (SELECT document_id, {distance} AS distance FROM knowledge_embeddings
                  WHERE model = {self._model} ORDER BY {distance} LIMIT $2) AS n
            JOIN knowledge_documents d ON d.id = n.document_id
            ORDER BY n.distance"""

    async def close(self) -> None:
        await self.embeddings.close()


def _literal(vector: list[float]) -> str:
    """pgvector's text form; asyncpg has no codec for the type and the text cast costs little."""
    return "[" + ",".join(repr(float(x)) for x in vector) + "]"

