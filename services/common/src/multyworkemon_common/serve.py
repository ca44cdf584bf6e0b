"""`python -m multyworkemon_common.serve [args...]` runs `python -m <service> [args...]` for the
service named by the environment variable SERVICE_PACKAGE (e.g. "ai-guesser" runs ai_guesser).

It exists because the four services share one Dockerfile (services/Dockerfile): an exec-form
ENTRYPOINT cannot expand the SERVICE build arg, so the image sets SERVICE_PACKAGE and starts this.
The service runs in this same process (python stays PID 1 and gets SIGTERM itself) and sees the
arguments unchanged, so `migrate` reaches the service as it would with `python -m`.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import sys


def main() -> None:
    package = os.environ.get("SERVICE_PACKAGE", "").strip()
    if not package:
        sys.exit("SERVICE_PACKAGE is not set: name the service to run, e.g. SERVICE_PACKAGE=ai-guesser")
    module = package.replace("-", "_")
    # A top-level lookup imports nothing; the __main__ lookup imports the package, as runpy would.
    spec = importlib.util.find_spec(module) if module.isidentifier() else None
    if spec is None or spec.submodule_search_locations is None or importlib.util.find_spec(f"{module}.__main__") is None:
        sys.exit(f"SERVICE_PACKAGE={package!r}: no installed service module {module!r} with a __main__ to run")
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
