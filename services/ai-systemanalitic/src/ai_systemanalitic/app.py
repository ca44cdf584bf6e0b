"""ai-systemanalitic: what must be done, where, with links to the materials in the knowledge base."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Annotated

from aiohttp import web
from aiohttp_pydantic.oas.typing import r200, r201, r204, r400, r404, r502, r503, r504
from pydantic import BaseModel, Field

from multyworkemon_common.app import METRICS, READINESS_CHECKS, attach_llm, create_service_app, finish_app
from multyworkemon_common.contract import AnalyticsPlan, AnalyticsRequest, Channel, DatabaseId, ErrorResponse, PreparedAnalytics, Source, users_words
from multyworkemon_common.database import Database, apply_migrations, attach_schema
from multyworkemon_common.errors import ApiError
from multyworkemon_common.llm import EmbeddingsSettings, StructuredAsker, build_embeddings
from multyworkemon_common.responses import json_response
from multyworkemon_common.logging import get_logger
from multyworkemon_common.prompts import saved_prompt
from multyworkemon_common.settings import DatabaseSettings
from multyworkemon_common.views import ContractView

from .documents import Document, FolderScan, KnowledgeFolderError, Progress
from .grounding import Grounding
from .knowledge import BATCH, KnowledgeBase, SyncReport
from .prompt import DEFAULT_PROMPT
from .semantic import Semantic

SERVICE = "ai-systemanalitic"
MIGRATIONS = Path(str(files("ai_systemanalitic") / "migrations"))
ASKER = web.AppKey("asker", StructuredAsker)
PROMPT = web.AppKey("prompt", str)
KNOWLEDGE = web.AppKey("knowledge", KnowledgeBase)
GROUNDING = web.AppKey("grounding", Grounding)
log = get_logger("ai_systemanalitic")

Responses = r200[PreparedAnalytics] | r400[ErrorResponse] | r502[ErrorResponse] | r503[ErrorResponse] | r504[ErrorResponse]


class AnalystSettings(DatabaseSettings, EmbeddingsSettings):
    port: int = 8002
    # A folder of Markdown documents with front matter, loaded into the knowledge base at start
    # (added, changed and removed files are applied); empty: the base keeps what it has.
    knowledge_dir: str = ""
    knowledge_max_sources: int = Field(4, ge=1, le=20)  # documents given to the model per request
    # A document is a source when it scores at least this share of the best one, and at least
    # min_score (off by default: scores grow with the base's size; GET /knowledge/search shows them).
    knowledge_relative_score: float = Field(0.3, ge=0, le=1)
    knowledge_min_score: float = Field(0.0, ge=0)
    # With EMBEDDINGS_MODEL: a document found by its vector alone is a source when its cosine
    # similarity to the request's is at least this (the scale is the model's: check with /knowledge/search).
    knowledge_min_similarity: float = Field(0.3, ge=-1, le=1)


class PrepareAnalyticsView(ContractView):
    async def get(
        self,
        request: str,
        context: str | None = None,
        preparedcontext: str | None = None,
        channel: Channel | None = None,
        username: str | None = None,
        department: str | None = None,
        position: str | None = None,
    ) -> Responses:
        """What must be done and where, with the knowledge-base sources it relies on.

        `context` (the seed also calls it `preparedcontext`) is required.

        Tags: analytics
        """
        fields = {"request": request, "context": context, "preparedcontext": preparedcontext, "channel": channel,
                  "username": username, "department": department, "position": position}
        return await self._prepare(AnalyticsRequest.model_validate(fields))

    async def post(self, body: AnalyticsRequest) -> Responses:
        """The same as GET, with the fields in a JSON body.

        Tags: analytics
        """
        return await self._prepare(body)

    async def _prepare(self, fields: AnalyticsRequest) -> web.Response:
        app = self.request.app
        grounding = app[GROUNDING]
        found, searched = await grounding.sources(fields.context, users_words(fields.discussion, fields.request))
        # The model reads the structured discussion when there is one; `request` would repeat it.
        payload = fields.model_dump(exclude_none=True, exclude={"request"} if fields.discussion else {"discussion"})
        payload["sources"] = grounding.for_model(found)
        plan = await app[ASKER].ask(app[PROMPT], payload, AnalyticsPlan)
        response = await grounding.checked(plan.response, found, searched)
        answer = PreparedAnalytics(
            is_enough=plan.is_enough,
            response=response,
            action=plan.action,
            # In the order the model numbered them: sources[n - 1] is [n] in the text.
            sources=[Source(title=f.title, url=f.url, score=f.score) for f in found],
        )
        return json_response(answer.model_dump())


# The knowledge base's admin API (needs the service token when one is set).
class DocumentIn(BaseModel):
    url: str = Field(min_length=1, max_length=2048, pattern=r"^https?://\S+$", description="The document's address; its identity")
    title: str = Field(min_length=1, max_length=500)
    text: str = Field(min_length=1, description="The document's text (Markdown or plain)")
    tags: list[str] = Field(default_factory=list, max_length=50, description="Domain, system, ...")
    summary: str | None = Field(None, max_length=2000, description="Optional; the first paragraph otherwise")


class DocumentSummary(BaseModel):
    id: int
    url: str
    title: str
    tags: list[str]
    origin: str = Field(description="folder: loaded from KNOWLEDGE_DIR; api: added through this API")
    path: str | None
    created_at: str
    updated_at: str


class DocumentFull(DocumentSummary):
    summary: str
    body: str
    links: list[str]


class DocumentPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[DocumentSummary]


class SearchHit(BaseModel):
    id: int
    title: str
    url: str
    score: float
    excerpt: str


class SearchResult(BaseModel):
    items: list[SearchHit]


class DocumentsView(ContractView):
    async def get(
        self, limit: Annotated[int, Field(ge=1, le=500)] = 50, offset: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    ) -> r200[DocumentPage] | r400[ErrorResponse] | r503[ErrorResponse]:
        """The knowledge base's documents, by title.

        Tags: knowledge base
        """
        total, items = await self.request.app[KNOWLEDGE].list(limit, offset)
        return json_response({"total": total, "limit": limit, "offset": offset, "items": items})

    async def post(self, body: DocumentIn) -> r201[DocumentSummary] | r200[DocumentSummary] | r400[ErrorResponse] | r503[ErrorResponse]:
        """Add a document, or replace the one with the same URL (201 when added, 200 when replaced).

        A document added here stays until deleted here; a folder load replaces it only if the
        folder holds a document with the same URL.

        Tags: knowledge base
        """
        try:
            document = Document.build(url=body.url, title=body.title, body=body.text, tags=body.tags, summary=body.summary)
        except ValueError as exc:
            raise ApiError(400, f"Document: {exc}") from None
        stored, created = await self.request.app[KNOWLEDGE].put(document)
        return json_response(stored, status=201 if created else 200)


class DocumentView(ContractView):
    async def get(self, document_id: DatabaseId, /) -> r200[DocumentFull] | r404[ErrorResponse] | r503[ErrorResponse]:
        """One document with its text.

        Tags: knowledge base
        """
        document = await self.request.app[KNOWLEDGE].get(document_id)
        if document is None:
            raise ApiError(404, f"Document {document_id} does not exist")
        return json_response(document)

    async def delete(self, document_id: DatabaseId, /) -> r204 | r404[ErrorResponse] | r503[ErrorResponse]:
        """Delete a document (one from the folder comes back at the next load if its file is still there).

        Tags: knowledge base
        """
        if not await self.request.app[KNOWLEDGE].delete(document_id):
            raise ApiError(404, f"Document {document_id} does not exist")
        return web.Response(status=204)


class SearchView(ContractView):
    async def get(self, q: str, limit: int = 10) -> r200[SearchResult] | r400[ErrorResponse] | r503[ErrorResponse]:
        """What the analyst would find for this text, with scores: for checking the base.

        Tags: knowledge base
        """
        if not q.strip() or not 1 <= limit <= 50:
            raise ApiError(400, "Parameter 'q' must not be empty and 'limit' must be between 1 and 50")
        found = await self.request.app[KNOWLEDGE].search(q, limit)
        return json_response({"items": [vars(f) for f in found]})


def knowledge_base(settings: AnalystSettings, database: Database) -> KnowledgeBase:
    embeddings = build_embeddings(settings)
    return KnowledgeBase(
        database,
        max_sources=settings.knowledge_max_sources,
        min_score=settings.knowledge_min_score,
        relative_score=settings.knowledge_relative_score,
        semantic=Semantic(database, embeddings, min_similarity=settings.knowledge_min_similarity) if embeddings else None,
    )


async def migrate(settings: AnalystSettings) -> list[str]:
    return await apply_migrations(settings.database_url.get_secret_value(), SERVICE, MIGRATIONS)


def log_progress(stage: str, done: int, total: int) -> None:
    log.info("knowledge base loading", labels={"stage": stage, "done": str(done), "total": str(total)})


async def load_knowledge(knowledge: KnowledgeBase, folder: Path, progress: Progress = log_progress, embed: bool = True) -> SyncReport:
    """Load a folder of Markdown documents; raises KnowledgeFolderError (nothing changed) on a bad file.

    Files whose size and mtime are as when they were loaded are not read, those whose bytes are as
    then not parsed, and neither is written again. With embeddings on, the added and changed
    documents are embedded afterwards (unless `embed` is false).
    """
    # Files are read and parsed in a thread, a batch ahead of the one PostgreSQL is writing: the two
    # overlap, and the service answers its probes meanwhile.
    scan = await asyncio.to_thread(FolderScan, folder, await knowledge.folder_files())

    async def batches() -> AsyncIterator[list[Document]]:
        ahead = asyncio.ensure_future(asyncio.to_thread(scan.read, BATCH))
        while batch := await ahead:
            ahead = asyncio.ensure_future(asyncio.to_thread(scan.read, BATCH))
            yield batch
            progress("files read, changed ones stored", scan.done, len(scan.paths))
        scan.check()

    report = await knowledge.sync_folder(batches(), scan)
    log.info("knowledge base loaded", labels={"folder": str(folder), "result": str(report)})
    if embed:
        await knowledge.embed_changes(progress)
    return report


def create_app(settings: AnalystSettings | None = None) -> web.Application:
    settings = settings or AnalystSettings()
    app = create_service_app(SERVICE, settings)
    database = Database(settings, app[METRICS])
    knowledge = knowledge_base(settings, database)
    app[ASKER] = attach_llm(app, settings)
    app[PROMPT] = saved_prompt(settings, DEFAULT_PROMPT)
    app[KNOWLEDGE] = knowledge
    app[GROUNDING] = Grounding(knowledge)
    # The folder given in KNOWLEDGE_DIR is loaded before the service calls itself ready.
    loading = {"done": not settings.knowledge_dir, "detail": "no folder configured" if not settings.knowledge_dir else "starting"}

    async def knowledge_ready() -> tuple[bool, str]:
        return loading["done"], loading["detail"] if loading["done"] else f"loading {settings.knowledge_dir}: {loading['detail']}"

    def progress(stage: str, done: int, total: int) -> None:
        log_progress(stage, done, total)
        loading["detail"] = f"{stage} {done}/{total}"

    async def prepare() -> None:
        if settings.migrate_on_start:
            await migrate(settings)
        await knowledge.setup()
        if settings.knowledge_dir:
            try:
                report = await load_knowledge(knowledge, Path(settings.knowledge_dir), progress, embed=False)
                loading.update(done=True, detail=f"{settings.knowledge_dir}: {report}")
            except KnowledgeFolderError as exc:
                # Retrying cannot fix a file; the base keeps the documents it had and the service serves them.
                log.error("knowledge folder not loaded; fix the files and restart or run load-knowledge", error=str(exc))
                loading.update(done=True, detail=f"{settings.knowledge_dir} not loaded: {exc}")
        # After the service is ready: until a document is embedded it is found by its words.
        await knowledge.embed_changes(log_progress)

    app[READINESS_CHECKS]["database"] = attach_schema(app, database, SERVICE, MIGRATIONS, prepare)
    app.on_cleanup.append(lambda _app: knowledge.close())
    app[READINESS_CHECKS]["knowledge"] = knowledge_ready
    app.router.add_view("/prepare-analititcs", PrepareAnalyticsView)
    # The contract's spelling stays; the correct spelling is an alias.
    app.router.add_view("/prepare-analytics", PrepareAnalyticsView)
    app.router.add_view("/knowledge/documents", DocumentsView)
    app.router.add_view("/knowledge/documents/{document_id}", DocumentView)
    app.router.add_view("/knowledge/search", SearchView)
    return finish_app(app, "ai-systemanalitic API")
