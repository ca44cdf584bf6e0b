"""`python -m ai_secretary` serves; `python -m ai_secretary migrate` applies migrations and exits."""

import asyncio
import sys

from multyworkemon_common.app import run_service
from multyworkemon_common.logging import setup_logging

from .app import SERVICE, SecretarySettings, create_app, migrate

if len(sys.argv) > 1 and sys.argv[1] == "migrate":
    settings = SecretarySettings()
    setup_logging(SERVICE, "migrate", settings.log_level)
    applied = asyncio.run(migrate(settings))
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
else:
    run_service(create_app())
