"""`python -m ai_systemanalitic` serves;
`python -m ai_systemanalitic migrate` applies migrations and exits;
`python -m ai_systemanalitic load-knowledge <folder>` applies migrations, loads a folder of Markdown
documents into the knowledge base (adds, updates, removes) and exits."""

import asyncio
import sys
from pathlib import Path

from multyworkemon_common.app import run_service
from multyworkemon_common.database import Database
from multyworkemon_common.logging import setup_logging

from .app import SERVICE, AnalystSettings, create_app, knowledge_base, load_knowledge, migrate
from .documents import KnowledgeFolderError


async def _load(settings: AnalystSettings, folder: Path) -> str:
    await migrate(settings)
    database = Database(settings)
    knowledge = knowledge_base(settings, database)
    try:
        await knowledge.setup()
        return str(await load_knowledge(knowledge, folder, _show_progress))
    finally:
        await knowledge.close()
        await database.close()


def _show_progress(stage: str, done: int, total: int) -> None:
    print(f"{stage}: {done}/{total}", file=sys.stderr, flush=True)


command = sys.argv[1] if len(sys.argv) > 1 else "serve"
if command == "migrate":
    settings = AnalystSettings()
    setup_logging(SERVICE, "migrate", settings.log_level)
    applied = asyncio.run(migrate(settings))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
elif command == "load-knowledge":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m ai_systemanalitic load-knowledge <folder of Markdown files>")
    settings = AnalystSettings()
    setup_logging(SERVICE, "load-knowledge", settings.log_level)
    try:
        print(f"knowledge base: {asyncio.run(_load(settings, Path(sys.argv[2])))}")
    except KnowledgeFolderError as exc:
        sys.exit("knowledge base unchanged; fix these files first:\n  " + "\n  ".join(exc.problems))
elif command == "serve":
    run_service(create_app())
else:
    sys.exit(f"unknown command {command!r}; use migrate, load-knowledge <folder>, or nothing to serve")
