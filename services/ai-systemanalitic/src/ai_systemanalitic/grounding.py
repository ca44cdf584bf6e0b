"""Answers that rest on the knowledge base: sources in, links checked out.

Before the model: the best documents for the request become numbered sources in its payload
(an empty list when nothing is relevant; the prompt tells the model to say so then).
After the model: every link in its answer must be in the knowledge base (a document's URL, or a
link a document's text gives); any other link is taken out and a short note stands in its place.
Apart from that the model's words reach the user as they are.
"""

from __future__ import annotations

import asyncpg

from multyworkemon_common.database import DatabaseUnavailable
from multyworkemon_common.logging import get_logger

from .knowledge import Found, KnowledgeBase
from multyworkemon_common.links import find_links, link_key, strip_links

log = get_logger("ai_systemanalitic.grounding")

# The database is away, or not migrated yet (migrations still running): not a bug.
NOT_AVAILABLE = (DatabaseUnavailable, asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError)


class Grounding:
    def __init__(self, knowledge: KnowledgeBase):
        self.knowledge = knowledge

    async def sources(self, context: str, users_words: str) -> tuple[list[Found], bool]:
        """The documents for what the user said, and whether the base could be searched at all.

        The base being away does not fail the request: the answer comes without sources (and the
        readiness check says why).
        """
        try:
            return await self.knowledge.search(f"{users_words}\n{context}"), True
        except NOT_AVAILABLE as exc:
            log.warning("knowledge base unavailable; answering without sources", error=f"{type(exc).__name__}: {exc}")
            return [], False

    @staticmethod
    def for_model(found: list[Found]) -> list[dict]:
        """The sources as the model gets them: numbered from 1, in the order `sources` is returned."""
        return [{"n": n, "title": f.title, "url": f.url, "excerpt": f.excerpt} for n, f in enumerate(found, start=1)]

    async def checked(self, response: str, found: list[Found], searched: bool) -> str:
        """The model's answer with the links outside the knowledge base taken out."""
        links = find_links(response)
        if links:
            allowed = {link_key(f.url) for f in found}
            if searched:
                try:
                    allowed |= {link_key(link) for link in await self.knowledge.known_links(links)}
                except NOT_AVAILABLE as exc:
                    # Unverifiable links count as unknown: only the sources given to the model stay.
                    log.warning("could not check links against the knowledge base", error=type(exc).__name__)
            response, removed = strip_links(response, lambda link: link_key(link) in allowed)
            if removed:
                log.warning("removed links that are not in the knowledge base", labels={"removed": str(len(removed))})
                log.debug("removed links", labels={"links": removed})
        return response
