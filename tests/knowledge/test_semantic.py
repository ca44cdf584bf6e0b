"""Semantic retrieval: embeddings from a local OpenAI-wire server (deterministic word vectors) through the
service's own client (llm/openai_wire.py), stored with pgvector, ranked together with the words (reciprocal rank fusion)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from ai_systemanalitic.app import AnalystSettings, knowledge_base, load_knowledge, migrate
from ai_systemanalitic.knowledge import KnowledgeBase
from multyworkemon_common.database import Database
from support.client import get
from support.openai_wire import EMBEDDING_DIMENSIONS, Reply

from .conftest import SAMPLES
from .test_loading import WIKI, write_doc
from .test_search_quality import BALANCES, WALLET_OPS

MODEL = "test-embeddings"


def embedding_settings(database_url: str, server, **overrides) -> dict:
    # The test model's cosines are lower than a real model's (support/openai_wire.py: hashed words).
    return {"database_url": database_url, "llm_base_url": server.base_url, "embeddings_model": MODEL,
            "embeddings_batch_size": 8, "knowledge_min_similarity": 0.15, **overrides}


@asynccontextmanager
async def open_base(database_url: str, server) -> AsyncIterator[KnowledgeBase]:
    """A migrated knowledge base with embeddings on."""
    settings = AnalystSettings(**embedding_settings(database_url, server))
    await migrate(settings)
    database = Database(settings)
    base = knowledge_base(settings, database)
    try:
        await base.setup()
        yield base
    finally:
        await base.close()
        await database.close()


@pytest.fixture
async def hybrid(database_url, openai_server) -> AsyncIterator[KnowledgeBase]:
    """The same with the sample set loaded."""
    async with open_base(database_url, openai_server) as base:
        await load_knowledge(base, SAMPLES)
        yield base


def texts_sent(server) -> list[str]:
    return [text for r in server.embedding_requests for text in ([r["body"]["input"]] if isinstance(r["body"]["input"], str) else r["body"]["input"])]


async def test_documents_are_embedded_in_batches_and_indexed(hybrid, openai_server):
    calls = openai_server.embedding_requests
    assert len(calls) == 3 and [len(c["body"]["input"]) for c in calls] == [8, 8, 2], "18 documents, 8 per call"
    assert {c["body"]["model"] for c in calls} == {MODEL} and all(c["body"]["encoding_format"] == "float" for c in calls)
    pool = await hybrid.database.pool()
    assert await pool.fetchval("SELECT count(*) FROM knowledge_embeddings WHERE model = $1", MODEL) == 18
    index = await pool.fetchval("SELECT indexdef FROM pg_indexes WHERE tablename = 'knowledge_embeddings' AND indexdef LIKE '%hnsw%'")
    assert "vector_cosine_ops" in index and f"'{MODEL}'" in index
    async with pool.acquire() as connection, connection.transaction():
        # With 18 rows the planner would rather read them all and sort: the test is that the query can use the index.
        await connection.execute("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
        vector = "[" + ",".join(["0.125"] * EMBEDDING_DIMENSIONS) + "]"
        plan = "\n".join(r[0] for r in await connection.fetch("EXPLAIN " + hybrid.semantic.nearest_query(EMBEDDING_DIMENSIONS), vector, 5))
    assert f"Index Scan using {hybrid.semantic.index}" in plan, plan


async def test_only_new_and_changed_documents_are_embedded_again(database_url, openai_server, tmp_path):
    folder = tmp_path / "kb"
    write_doc(folder, "a.md", "Казначейство", f"{WIKI}/A", "Позиция ликвидности на конец дня.")
    write_doc(folder, "b.md", "Отпуска", f"{WIKI}/B", "Как оформить отпуск.")
    async with open_base(database_url, openai_server) as base:
        await load_knowledge(base, folder)
        assert len(texts_sent(openai_server)) == 2
        openai_server.embedding_requests.clear()
        await load_knowledge(base, folder)
        assert texts_sent(openai_server) == [], "an unchanged folder costs no embeddings call"
        write_doc(folder, "b.md", "Отпуска", f"{WIKI}/B", "Как оформить отпуск в кадровом портале.")
        await load_knowledge(base, folder)
        assert len(texts_sent(openai_server)) == 1 and "кадровом портале" in texts_sent(openai_server)[0]


async def test_failing_calls_are_retried_while_loading(database_url, openai_server, tmp_path):
    folder = tmp_path / "kb"
    write_doc(folder, "a.md", "Казначейство", f"{WIKI}/A", "Позиция ликвидности на конец дня.")
    openai_server.embedding_script.extend([Reply(status=500), Reply(status=429)])
    async with open_base(database_url, openai_server) as base:
        await load_knowledge(base, folder)
        assert len(openai_server.embedding_requests) == 3, "two failures, then the answer"
        assert await (await base.database.pool()).fetchval("SELECT count(*) FROM knowledge_embeddings") == 1


async def test_vectors_find_by_meaning_what_words_miss(hybrid, samples):
    # "deposits" is in no document; the embeddings model holds it for "пополнения" (top-ups).
    assert await samples.search("deposits") == []
    found = await hybrid.search("deposits")
    assert WALLET_OPS in [f.url for f in found[:2]] and len(found) <= 4, "only the documents alike enough"
    assert all(f.excerpt for f in found), "a document found by its vector alone is quoted by its summary"


async def test_fusion_lifts_what_both_ways_rank_well(hybrid, samples):
    # The words put the operations cube 4th (a miss of the quality table); its vector is the nearest.
    request = "wallet top-ups by source last month"
    assert [f.url for f in await samples.search(request, 10)].index(WALLET_OPS) == 3
    found = await hybrid.search(request)
    assert [f.url for f in found[:2]] == [BALANCES, WALLET_OPS]
    assert [f.score for f in found] == sorted((f.score for f in found), reverse=True) and found[0].score <= 2 / 61


async def test_search_falls_back_to_words_when_the_embeddings_endpoint_fails(hybrid, samples, openai_server):
    request = "авторизации кошельков по кодам ответа"
    openai_server.embedding_script.append(Reply(status=500))
    found = await hybrid.search(request)
    assert found and [f.url for f in found] == [f.url for f in await samples.search(request)], "the words' answer, no retry waited for"
    assert len(openai_server.embedding_requests) == 3 + 1


async def test_without_embeddings_model_the_search_is_lexical_and_needs_no_vectors(samples):
    assert samples.semantic is None
    pool = await samples.database.pool()
    assert await pool.fetchval("SELECT to_regclass('knowledge_embeddings')") is None


async def test_the_analyst_embeds_once_ready_and_searches_hybrid(database_url, openai_server, start_analyst):
    analyst = await start_analyst(**embedding_settings(database_url, openai_server), knowledge_dir=str(SAMPLES))
    pool = await Database(AnalystSettings(database_url=database_url)).pool()
    for _ in range(200):  # embedding goes on after the service is ready
        if await pool.fetchval("SELECT count(*) FROM knowledge_embeddings") == 18:
            break
        await asyncio.sleep(0.05)
    await pool.close()
    status, body, _ = await get(f"{analyst.url}/knowledge/search", {"q": "wallet top-ups by source last month"})
    assert status == 200 and WALLET_OPS in [item["url"] for item in body["items"][:2]]
